#!/usr/bin/env bash
# Build (or reuse) the kernel + base initramfs used by the real-guest harness.
#
#   bash test/guest/build-initramfs.sh [--force] [--no-install]
#
# Everything comes from Debian packages: the kernel is `apt-get download`ed and
# extracted with dpkg-deb (never installed); busybox-static, fio, e2fsprogs and
# util-linux binaries are copied from the host with the shared libraries ldd finds,
# at their host paths. Output goes to test/guest/cache/ (gitignored):
#
#   cache/debs/linux-image-*.deb       the downloaded kernel package
#   cache/<key>/vmlinuz                the kernel
#   cache/<key>/base.cpio.gz           the base initramfs (init, busybox, modules, e2fsprogs, ...)
#   cache/<key>/fio.cpio               fio + its libraries (uncompressed; appended when needed)
#   cache/<key>/assets.json            {"kernel","initrd","key","kernelRelease",...}
#   cache/assets.json                  copy of the newest one
#
# <key> is a hash of this script + the versions of the packages it copies from, so a
# second run with nothing changed does nothing. The last line printed on stdout is the
# assets JSON; progress goes to stderr.
#
# Environment: VBLK_GUEST_KERNEL_PKG=linux-image-...  pick another kernel package
#              VBLK_GUEST_CACHE=DIR                   cache directory (default: ./cache)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${VBLK_GUEST_CACHE:-$HERE/cache}"
FORCE=0
INSTALL=1
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    --no-install) INSTALL=0 ;;
    *) echo "usage: $0 [--force] [--no-install]" >&2; exit 2 ;;
  esac
done

log() { echo "[build-initramfs] $*" >&2; }
die() { echo "[build-initramfs] ERROR: $*" >&2; exit 1; }

mkdir -p "$CACHE/debs"

# ---------------------------------------------------------------- host packages
# command -> Debian package that provides it
declare -A NEED=(
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-storage-daemon]=qemu-system-common
  [cpio]=cpio
  [fio]=fio
  [mke2fs]=e2fsprogs
  [e2fsck]=e2fsprogs
  [debugfs]=e2fsprogs
  [blkdiscard]=util-linux
  [gzip]=gzip
)
APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
}
apt_lists_present() { compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; }

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# busybox-static ships a static /bin/busybox (the dynamic "busybox" package conflicts).
if [ "$(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null)" != "install ok installed" ]; then
  missing+=(busybox-static)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  pkgs="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  [ "$INSTALL" = 1 ] || die "missing packages: $pkgs (run without --no-install, as root)"
  [ "$(id -u)" = 0 ] || die "missing packages: $pkgs (need root to apt-get install them)"
  apt_lists_present || apt_update_once
  log "apt-get install $pkgs"
  # shellcheck disable=SC2086
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >&2; then
    apt_update_once
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >&2 \
      || die "apt-get install $pkgs failed"
  fi
fi
for cmd in "${!NEED[@]}"; do command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing"; done

# ---------------------------------------------------------------- kernel package
find_kernel_deb() {
  local pattern="${1:-linux-image-*}"
  # shellcheck disable=SC2086
  { ls -1 "$CACHE"/debs/${pattern}_*.deb 2>/dev/null || true; } | sort -V | tail -n1
}
KDEB=""
if [ -n "${VBLK_GUEST_KERNEL_PKG:-}" ]; then
  KPKG="$VBLK_GUEST_KERNEL_PKG"
  KDEB="$(find_kernel_deb "$KPKG")"
else
  KDEB="$(find_kernel_deb)"
  KPKG=""
fi
if [ -z "$KDEB" ]; then
  resolve_kpkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null \
      | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
  }
  if [ -z "$KPKG" ]; then
    apt_lists_present || apt_update_once
    KPKG="$(resolve_kpkg || true)"
    if [ -z "$KPKG" ]; then apt_update_once; KPKG="$(resolve_kpkg || true)"; fi
    [ -n "$KPKG" ] || die "cannot resolve the kernel behind linux-image-cloud-amd64"
  fi
  log "apt-get download $KPKG"
  (cd "$CACHE/debs" && apt-get download -qq "$KPKG" >&2 2>/dev/null) \
    || { apt_update_once; (cd "$CACHE/debs" && apt-get download -qq "$KPKG" >&2); } \
    || die "apt-get download $KPKG failed"
  KDEB="$(find_kernel_deb "$KPKG")"
  [ -n "$KDEB" ] || die "downloaded $KPKG but cannot find its .deb in $CACHE/debs"
fi

# ---------------------------------------------------------------- cache key
FIO_BIN="$(command -v fio)"
MKE2FS_BIN="$(command -v mke2fs)"
E2FSCK_BIN="$(command -v e2fsck)"
BLKDISCARD_BIN="$(command -v blkdiscard)"
BLOCKDEV_BIN="$(command -v blockdev || true)"
versions="$(dpkg-query -W -f '${Package}=${Version}\n' busybox-static fio e2fsprogs util-linux libc6 2>/dev/null | sort)"
KEY="$( { cat "${BASH_SOURCE[0]}"; echo "$versions"; basename "$KDEB"; sha256sum "$KDEB" | cut -d' ' -f1; } \
  | sha256sum | cut -c1-16)"
OUT="$CACHE/$KEY"
if [ "$FORCE" = 0 ] && [ -f "$OUT/assets.json" ] && [ -f "$OUT/base.cpio.gz" ] && [ -f "$OUT/fio.cpio" ] && [ -f "$OUT/vmlinuz" ]; then
  log "cached: $OUT"
  cp "$OUT/assets.json" "$CACHE/assets.json"
  cat "$OUT/assets.json"; echo
  exit 0
fi

# ---------------------------------------------------------------- build
log "building $OUT from $(basename "$KDEB")"
TMP="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
dpkg-deb -x "$KDEB" "$TMP/kpkg"
VMLINUZ="$(ls -1 "$TMP"/kpkg/boot/vmlinuz-* | head -n1)"
[ -f "$VMLINUZ" ] || die "no vmlinuz in $KDEB"
KREL="$(basename "$VMLINUZ" | sed 's/^vmlinuz-//')"
MODDIR="$TMP/kpkg/lib/modules/$KREL"
[ -d "$MODDIR" ] || MODDIR="$TMP/kpkg/usr/lib/modules/$KREL"
[ -d "$MODDIR" ] || die "no modules directory for $KREL"

R="$TMP/root"
# merged-/usr layout like the host, so libraries land at the paths ldd prints.
mkdir -p "$R"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,proc,sys,dev,tmp,mnt,run,root,workload}
ln -s usr/bin "$R/bin"; ln -s usr/sbin "$R/sbin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"

# busybox + applet links (real binaries copied below take precedence: /usr/sbin is first in PATH)
cp /bin/busybox "$R/usr/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ -e "$R/usr/bin/$applet" ] || ln -s busybox "$R/usr/bin/$applet"
done

# Modules, in insmod order; decompress .ko.xz / .ko.zst / .ko.gz if the kernel ships them so.
MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"
mkdir -p "$R/usr/lib/modules/vblk"
for m in $MODS; do
  f="$(find "$MODDIR" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n1)"
  if [ -z "$f" ]; then
    # built into the kernel? then there is nothing to insmod
    if grep -q "/$m.ko" "$MODDIR/modules.builtin" 2>/dev/null; then log "$m is built in"; continue; fi
    die "module $m not found in $KREL"
  fi
  case "$f" in
    *.ko) cp "$f" "$R/usr/lib/modules/vblk/$m.ko" ;;
    *.xz) xz -dc "$f" >"$R/usr/lib/modules/vblk/$m.ko" ;;
    *.zst) zstd -qdc "$f" >"$R/usr/lib/modules/vblk/$m.ko" ;;
    *.gz) gzip -dc "$f" >"$R/usr/lib/modules/vblk/$m.ko" ;;
  esac
  echo "$m" >>"$R/usr/lib/modules/vblk/order"
done
touch "$R/usr/lib/modules/vblk/order"

# Host binaries + their shared libraries (at their host paths, with /lib, /lib64, /bin,
# /sbin spelled under /usr as the merged layout above has them). fio and the ~60 libraries
# it links (ceph, gluster, rdma, ...: ~80 MB) go to a separate uncompressed fio.cpio that
# the runner appends only for workloads that use fio: unpacking it costs ~1-2 s under TCG.
canon() {
  case "$1" in
    /lib/* | /lib64/* | /bin/* | /sbin/*) echo "/usr$1" ;;
    *) echo "$1" ;;
  esac
}
copy_with_libs() {
  local root="$1" bin="$2" dest="$3"
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$bin" "$root$dest"
  ldd "$bin" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | while read -r lib; do
    [ -e "$lib" ] || continue
    local c
    c="$(canon "$lib")"
    if [ ! -e "$R$c" ] && [ ! -e "$root$c" ]; then
      mkdir -p "$root$(dirname "$c")"
      cp -L "$lib" "$root$c"
    fi
    dirname "$lib" >>"$TMP/libdirs"
  done
}
: >"$TMP/libdirs"
F="$TMP/fioroot"
mkdir -p "$F/usr/bin"
copy_with_libs "$R" "$MKE2FS_BIN" /usr/sbin/mke2fs
copy_with_libs "$R" "$E2FSCK_BIN" /usr/sbin/e2fsck
copy_with_libs "$R" "$BLKDISCARD_BIN" /usr/sbin/blkdiscard
[ -n "$BLOCKDEV_BIN" ] && copy_with_libs "$R" "$BLOCKDEV_BIN" /usr/sbin/blockdev
copy_with_libs "$F" "$FIO_BIN" /usr/bin/fio
ln -sf mke2fs "$R/usr/sbin/mkfs.ext4"
ln -sf e2fsck "$R/usr/sbin/fsck.ext4"
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$R/etc/mke2fs.conf"
ln -s /proc/mounts "$R/etc/mtab"
LIBPATH="$(sort -u "$TMP/libdirs" | tr '\n' ':' | sed 's/:$//')"
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"

# /init: mount, insmod, run the workload, print results between markers, power off.
cat >"$R/init" <<EOF
#!/bin/sh
export PATH=/usr/sbin:/usr/bin
export LD_LIBRARY_PATH=$LIBPATH
export HOME=/root
EOF
cat >>"$R/init" <<'EOF'
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "VBLK-INIT-BEGIN $(uname -r) cpus=$(nproc)"
for m in $(cat /lib/modules/vblk/order); do
  insmod "/lib/modules/vblk/$m.ko" || echo "VBLK-INIT-ERROR insmod $m"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then echo "VBLK-INIT-READY vda"; else echo "VBLK-INIT-READY no-vda"; fi
# keep kernel chatter (ext4 mount notices, ...) out of the result sections
echo 4 >/proc/sys/kernel/printk
# The workload: an appended cpio puts /workload/run.sh (+ env, lib.sh) here; or
# vblk.workload=NAME on the kernel command line picks /workload/NAME.sh.
WL=/workload/run.sh
for arg in $(cat /proc/cmdline); do
  case "$arg" in vblk.workload=*) WL="/workload/${arg#vblk.workload=}.sh" ;; esac
done
[ -f /workload/env ] && . /workload/env
cd /tmp
if [ -f "$WL" ]; then
  echo "VBLK-WORKLOAD-BEGIN $WL"
  sh "$WL"
  rc=$?
else
  echo "VBLK-INIT-ERROR no workload at $WL"
  rc=127
fi
if [ "$rc" != 0 ]; then
  echo "VBLK-RESULT-BEGIN dmesg"
  dmesg | tail -n 40
  echo "VBLK-RESULT-END dmesg"
fi
echo "VBLK-EXIT $rc"
sync
poweroff -f
EOF
chmod 755 "$R/init"

mkdir -p "$OUT.tmp"
(cd "$R" && find . -print0 | sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -1 >"$OUT.tmp/base.cpio.gz"
(cd "$F" && find . -mindepth 1 -print0 | sort -z | cpio --null -o -H newc --owner=0:0 --quiet) >"$OUT.tmp/fio.cpio"
cp "$VMLINUZ" "$OUT.tmp/vmlinuz"
cat >"$OUT.tmp/assets.json" <<EOF
{"key":"$KEY","kernel":"$OUT/vmlinuz","initrd":"$OUT/base.cpio.gz","fioCpio":"$OUT/fio.cpio","kernelRelease":"$KREL","kernelDeb":"$(basename "$KDEB")","modules":"$(echo $MODS)","builtAt":"$(date -u +%FT%TZ)"}
EOF
sed -i "s#$OUT.tmp#$OUT#g" "$OUT.tmp/assets.json"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
cp "$OUT/assets.json" "$CACHE/assets.json"
# drop builds made under older keys
for d in "$CACHE"/*/; do
  b="$(basename "$d")"
  if [[ "$b" =~ ^[0-9a-f]{16}$ ]] && [ "$b" != "$KEY" ]; then rm -rf "$d"; fi
done
log "built $OUT ($(du -h "$OUT/base.cpio.gz" | cut -f1) base initramfs + $(du -h "$OUT/fio.cpio" | cut -f1) fio.cpio, kernel $KREL)"
cat "$OUT/assets.json"; echo
