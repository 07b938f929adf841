# Helpers sourced by the guest workloads (busybox sh). The harness's /init has mounted
# proc/sys/dev/tmp, loaded the virtio modules and sourced /workload/env.
# Use full paths for util-linux / e2fsprogs tools: busybox prefers its own applets.
DEV="${VBLK_DEV:-/dev/vda}"
BLKDISCARD=/usr/sbin/blkdiscard
MKFS_EXT4=/usr/sbin/mkfs.ext4
FSCK_EXT4=/usr/sbin/fsck.ext4

# result NAME [FILE]: print FILE (or stdin) as a named result section on the console.
result() {
  echo "VBLK-RESULT-BEGIN $1"
  if [ -n "${2:-}" ]; then cat "$2"; else cat; fi
  echo
  echo "VBLK-RESULT-END $1"
}

# json_str VALUE: VALUE as a JSON string literal (quotes, backslashes, control chars).
json_str() {
  printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$/"/'
  # an empty value gives no line for sed to work on
  [ -n "$1" ] || printf '""'
}

# sysval FILE [DEFAULT]: a sysfs value, or DEFAULT (null) when absent.
sysval() {
  if [ -r "$1" ]; then cat "$1"; else echo "${2:-null}"; fi
}

# fio_engine: io_uring if it works on $DEV in this guest, else libaio.
fio_engine() {
  if [ -n "${FIO_ENGINE:-}" ] && [ "$FIO_ENGINE" != auto ]; then echo "$FIO_ENGINE"; return; fi
  if fio --name=probe --filename="$DEV" --direct=1 --rw=read --bs=4k --size=4k --ioengine=io_uring \
    --output=/dev/null >/dev/null 2>&1; then
    echo io_uring
  else
    echo libaio
  fi
}

# md5_range OFFSET LEN: md5 of LEN bytes of $DEV at OFFSET (both multiples of 1 MiB), O_DIRECT.
md5_range() {
  dd if="$DEV" bs=1M skip=$(($1 / 1048576)) count=$(($2 / 1048576)) iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1
}
# md5_zero LEN: md5 of LEN zero bytes.
md5_zero() {
  dd if=/dev/zero bs=1M count=$(($1 / 1048576)) 2>/dev/null | md5sum | cut -d' ' -f1
}
