# fio-perf: fio random reads with O_DIRECT, one fio run per configuration.
# Env: CONFIGS ("IODEPTHxNUMJOBS ...", default "${IODEPTH:-1}x${NUMJOBS:-1}"),
#      RUNTIME (seconds, 5), RAMP (seconds, 1), RW (randread), BS (4k), FIO_ENGINE (auto).
# Sections: "params" (JSON) and "fio-QDxJOBS" (fio's JSON) per configuration.
. /workload/lib.sh
CONFIGS="${CONFIGS:-${IODEPTH:-1}x${NUMJOBS:-1}}"
RUNTIME="${RUNTIME:-5}"
RAMP="${RAMP:-1}"
RW="${RW:-randread}"
BS="${BS:-4k}"
engine=$(fio_engine)
echo "{\"engine\": \"$engine\", \"configs\": \"$CONFIGS\", \"runtime\": $RUNTIME, \"ramp\": $RAMP, \"rw\": \"$RW\", \"bs\": \"$BS\", \"cpus\": $(nproc)}" | result params
fail=0
for c in $CONFIGS; do
  qd=${c%x*}
  jobs=${c#*x}
  fio --name=perf --filename="$DEV" --direct=1 --ioengine="$engine" --rw="$RW" --bs="$BS" \
    --iodepth="$qd" --numjobs="$jobs" --runtime="$RUNTIME" --ramp_time="$RAMP" --time_based \
    --group_reporting --norandommap --randrepeat=0 --output-format=json --output=/tmp/perf.json >/tmp/fio.log 2>&1
  rc=$?
  if [ $rc = 0 ]; then result "fio-$c" /tmp/perf.json; else cat /tmp/fio.log; fail=1; fi
done
exit $fail
