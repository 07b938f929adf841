# fio-perf: fio random reads with O_DIRECT, one fio run per configuration.
# Env: CONFIGS ("IODEPTHxNUMJOBS ...", default "${IODEPTH:-1}x${NUMJOBS:-1}"),
#      RUNTIME (seconds, 5), RAMP (seconds, 1), RW (randread), BS (4k), FIO_ENGINE (auto).
# Sections: "params" (JSON), and per configuration "fio-QDxJOBS" (fio's JSON) and
# "irq-QDxJOBS" ({"irqs": N}: the disk's request-queue interrupts during that fio run,
# ramp included, from /proc/interrupts).
. /workload/lib.sh
CONFIGS="${CONFIGS:-${IODEPTH:-1}x${NUMJOBS:-1}}"
RUNTIME="${RUNTIME:-5}"
RAMP="${RAMP:-1}"
RW="${RW:-randread}"
BS="${BS:-4k}"
engine=$(fio_engine)
echo "{\"engine\": \"$engine\", \"configs\": \"$CONFIGS\", \"runtime\": $RUNTIME, \"ramp\": $RAMP, \"rw\": \"$RW\", \"bs\": \"$BS\", \"cpus\": $(nproc)}" | result params
# Sum of every CPU's count on the virtio request-queue interrupt lines ("virtioN-req.Q").
req_irqs() {
  awk '/-req\.[0-9]+/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) t += $i } END { print t + 0 }' /proc/interrupts
}
fail=0
for c in $CONFIGS; do
  qd=${c%x*}
  jobs=${c#*x}
  irq0=$(req_irqs)
  fio --name=perf --filename="$DEV" --direct=1 --ioengine="$engine" --rw="$RW" --bs="$BS" \
    --iodepth="$qd" --numjobs="$jobs" --runtime="$RUNTIME" --ramp_time="$RAMP" --time_based \
    --group_reporting --norandommap --randrepeat=0 --output-format=json --output=/tmp/perf.json >/tmp/fio.log 2>&1
  rc=$?
  irq1=$(req_irqs)
  if [ $rc = 0 ]; then result "fio-$c" /tmp/perf.json; else cat /tmp/fio.log; fail=1; fi
  echo "{\"irqs\": $((irq1 - irq0))}" | result "irq-$c"
done
exit $fail
