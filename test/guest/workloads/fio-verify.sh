# fio-verify: random 4k O_DIRECT writes over the whole disk with crc32c verify headers,
# NUMJOBS jobs each owning its own slice (per-job offsets), then fio's verify pass.
# Env: NUMJOBS (2), IODEPTH (16), FIO_ENGINE (auto). Section "fio": fio's JSON.
. /workload/lib.sh
NUMJOBS="${NUMJOBS:-2}"
IODEPTH="${IODEPTH:-16}"
engine=$(fio_engine)
size=$(blockdev --getsize64 "$DEV")
slice=$((size / NUMJOBS / 4096 * 4096))
fio --name=verify --filename="$DEV" --direct=1 --ioengine="$engine" --rw=randwrite --bs=4k \
  --iodepth="$IODEPTH" --numjobs="$NUMJOBS" --size="$slice" --offset_increment="$slice" \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_dump=0 \
  --output-format=json --output=/tmp/fio.json >/tmp/fio.log 2>&1
rc=$?
[ $rc = 0 ] || cat /tmp/fio.log
echo "{\"engine\": \"$engine\", \"numjobs\": $NUMJOBS, \"iodepth\": $IODEPTH, \"slice\": $slice, \"sizeBytes\": $size, \"rc\": $rc}" | result params
result fio /tmp/fio.json
exit $rc
