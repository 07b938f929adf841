# flush-discard: write a known pattern over three 1-MiB-aligned regions with O_DIRECT,
# fsync (a FLUSH to the device), read it back, then discard region D (blkdiscard) and
# zero region Z (blkdiscard -z: BLKZEROOUT, WRITE_ZEROES when offered), sync again.
# The host then checks the image: region K still holds the pattern, D and Z read as zeros.
# Env (bytes, multiples of 1 MiB): K_OFF K_LEN D_OFF D_LEN Z_OFF Z_LEN.
# Pattern: the 16 bytes "VBLKPATTERN-0123" repeated.
. /workload/lib.sh
K_OFF="${K_OFF:-1048576}"; K_LEN="${K_LEN:-4194304}"
D_OFF="${D_OFF:-8388608}"; D_LEN="${D_LEN:-4194304}"
Z_OFF="${Z_OFF:-16777216}"; Z_LEN="${Z_LEN:-4194304}"
printf 'VBLKPATTERN-0123' >/tmp/pat
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do cat /tmp/pat /tmp/pat >/tmp/pat2; mv /tmp/pat2 /tmp/pat; done # 1 MiB
# md5 of LEN bytes of the pattern
pat_md5() { i=0; while [ $i -lt $(($1 / 1048576)) ]; do cat /tmp/pat; i=$((i + 1)); done | md5sum | cut -d' ' -f1; }
write_rc=0
for r in "$K_OFF $K_LEN" "$D_OFF $D_LEN" "$Z_OFF $Z_LEN"; do
  set -- $r
  i=0
  while [ $i -lt $(($2 / 1048576)) ]; do
    dd if=/tmp/pat of="$DEV" bs=1M seek=$(($1 / 1048576 + i)) count=1 oflag=direct conv=notrunc 2>/dev/null || write_rc=1
    i=$((i + 1))
  done
done
# fsync on the block device sends a FLUSH (when the device has a write cache)
dd if=/dev/null of="$DEV" conv=fsync,notrunc 2>/dev/null; fsync_rc=$?
sync
k_before=$(md5_range "$K_OFF" "$K_LEN"); d_before=$(md5_range "$D_OFF" "$D_LEN"); z_before=$(md5_range "$Z_OFF" "$Z_LEN")
$BLKDISCARD -o "$D_OFF" -l "$D_LEN" "$DEV"; discard_rc=$?
$BLKDISCARD -z -o "$Z_OFF" -l "$Z_LEN" "$DEV"; zero_rc=$?
sync
dd if=/dev/null of="$DEV" conv=fsync,notrunc 2>/dev/null
k_after=$(md5_range "$K_OFF" "$K_LEN"); d_after=$(md5_range "$D_OFF" "$D_LEN"); z_after=$(md5_range "$Z_OFF" "$Z_LEN")
{
  echo "{\"write\": $write_rc, \"fsync\": $fsync_rc, \"discard\": $discard_rc, \"zeroout\": $zero_rc,"
  pk=$(pat_md5 "$K_LEN"); zz=$(md5_zero "$Z_LEN")
  # regions of the same length share the (slow under TCG) md5 computation
  if [ "$D_LEN" = "$K_LEN" ]; then pd=$pk; else pd=$(pat_md5 "$D_LEN"); fi
  if [ "$Z_LEN" = "$K_LEN" ]; then pz=$pk; else pz=$(pat_md5 "$Z_LEN"); fi
  if [ "$D_LEN" = "$Z_LEN" ]; then zd=$zz; else zd=$(md5_zero "$D_LEN"); fi
  echo " \"patternMd5\": {\"k\": \"$pk\", \"d\": \"$pd\", \"z\": \"$pz\"},"
  echo " \"zeroMd5\": {\"d\": \"$zd\", \"z\": \"$zz\"},"
  echo " \"before\": {\"k\": \"$k_before\", \"d\": \"$d_before\", \"z\": \"$z_before\"},"
  echo " \"after\": {\"k\": \"$k_after\", \"d\": \"$d_after\", \"z\": \"$z_after\"},"
  echo " \"regions\": {\"k\": [$K_OFF, $K_LEN], \"d\": [$D_OFF, $D_LEN], \"z\": [$Z_OFF, $Z_LEN]},"
  echo " \"discardMaxBytes\": $(sysval /sys/block/vda/queue/discard_max_bytes), \"writeZeroesMaxBytes\": $(sysval /sys/block/vda/queue/write_zeroes_max_bytes)}"
} >/tmp/fd.json
result flush-discard /tmp/fd.json
[ $write_rc = 0 ] && [ $fsync_rc = 0 ] && [ $zero_rc = 0 ]
