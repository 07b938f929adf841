# fs: mkfs.ext4, write files with known content, sync, umount, fsck -f -n, mount again
# and verify. Env: FS_RAND_MIB (default 8), FS_SMALL_FILES (default 50).
# Host-visible content: /known.txt = "vblk known line N\n" for N in 1..2000,
# /rand.bin = FS_RAND_MIB MiB of random data (md5 reported), /small/fN.txt = "file N\n".
. /workload/lib.sh
RAND_MIB="${FS_RAND_MIB:-8}"
SMALL="${FS_SMALL_FILES:-50}"
fail=0
$MKFS_EXT4 -F -q "$DEV" >/tmp/mkfs.log 2>&1; mkfs_rc=$?
[ $mkfs_rc = 0 ] || { cat /tmp/mkfs.log; fail=1; }
mkdir -p /mnt
mount -t ext4 "$DEV" /mnt; mount1_rc=$?
[ $mount1_rc = 0 ] || fail=1
seq 1 2000 | sed 's/^/vblk known line /' >/tmp/known.txt
dd if=/dev/urandom of=/tmp/rand.bin bs=1M count="$RAND_MIB" 2>/dev/null
write_rc=0
cp /tmp/known.txt /mnt/known.txt || write_rc=1
cp /tmp/rand.bin /mnt/rand.bin || write_rc=1
mkdir -p /mnt/small
i=1
while [ $i -le "$SMALL" ]; do echo "file $i" >/mnt/small/f$i.txt || write_rc=1; i=$((i + 1)); done
(cd /mnt && md5sum known.txt rand.bin small/*.txt) >/tmp/sums
sync; sync_rc=$?
umount /mnt; umount1_rc=$?
$FSCK_EXT4 -f -n "$DEV" >/tmp/fsck.log 2>&1; fsck_rc=$?
[ $fsck_rc = 0 ] || cat /tmp/fsck.log
# drop the guest page cache so the verification reads come from the device
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 "$DEV" /mnt; mount2_rc=$?
(cd /mnt && md5sum -c /tmp/sums) >/tmp/verify.log 2>&1; verify_rc=$?
[ $verify_rc = 0 ] || cat /tmp/verify.log
cmp /tmp/known.txt /mnt/known.txt; cmp_rc=$?
umount /mnt; umount2_rc=$?
rand_md5=$(md5sum /tmp/rand.bin | cut -d' ' -f1)
known_md5=$(md5sum /tmp/known.txt | cut -d' ' -f1)
{
  echo "{\"mkfs\": $mkfs_rc, \"mount1\": $mount1_rc, \"write\": $write_rc, \"sync\": $sync_rc,"
  echo " \"umount1\": $umount1_rc, \"fsck\": $fsck_rc, \"mount2\": $mount2_rc, \"verify\": $verify_rc,"
  echo " \"cmp\": $cmp_rc, \"umount2\": $umount2_rc, \"files\": $(wc -l </tmp/sums),"
  echo " \"randMd5\": \"$rand_md5\", \"knownMd5\": \"$known_md5\", \"randMiB\": $RAND_MIB}"
} >/tmp/fs.json
result fs /tmp/fs.json
for rc in $mkfs_rc $mount1_rc $write_rc $sync_rc $umount1_rc $fsck_rc $mount2_rc $verify_rc $cmp_rc $umount2_rc; do
  [ "$rc" = 0 ] || fail=1
done
exit $fail
