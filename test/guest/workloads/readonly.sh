# readonly: the disk must be read-only in the guest and a write must fail without changing it.
# Section "readonly": {ro, writeRc, before, after, features}.
. /workload/lib.sh
ro=$(cat /sys/block/vda/ro)
before=$(md5_range 0 1048576)
dd if=/dev/zero of="$DEV" bs=4096 count=1 oflag=direct conv=notrunc 2>/tmp/dd.err; write_rc=$?
sync
echo 3 >/proc/sys/vm/drop_caches
after=$(md5_range 0 1048576)
features=$(cat /sys/bus/virtio/devices/*/features 2>/dev/null | head -n1)
echo "{\"ro\": $ro, \"writeRc\": $write_rc, \"writeErr\": $(json_str "$(cat /tmp/dd.err)"), \"before\": \"$before\", \"after\": \"$after\", \"virtioFeatures\": \"$features\"}" | result readonly
