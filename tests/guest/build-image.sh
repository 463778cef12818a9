#!/bin/bash
# Build a small bootable raw disk from this machine's Debian packages:
# MBR (syslinux mbr.bin), one ext4 partition with extlinux, Debian's
# kernel and initramfs, busybox-static as userland and tests/guest/init.sh
# as init.  No network.  Usage: build-image.sh OUT.img [SIZE_MIB]
#                               build-image.sh --cached DIR  (prints path)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cache.sh"
if [ "${1:-}" = --cached ]; then
	kver=$(ls /boot/vmlinuz-* | sort -V | tail -1)
	key=$( { sha256sum "$0" "$here/init.sh" "$here/cache.sh"
		echo "$kver"; } | sha256sum | cut -c1-16)
	guest_cached guest "$key" "$0" "${2:-}"
	exit 0
fi
out=$1
size=${2:-192}
kernel=$(ls /boot/vmlinuz-* | sort -V | tail -1)
kver=${kernel#/boot/vmlinuz-}
initrd=/boot/initrd.img-$kver
[ -f "$initrd" ] || { echo "build-image: no initramfs for $kver" >&2; exit 1; }
work=$(mktemp -d)
mnt=$work/mnt
loop=
cleanup() {
	mountpoint -q "$mnt" && umount "$mnt"
	[ -n "$loop" ] && losetup -d "$loop"
	rm -rf "$work"
}
trap cleanup EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,boot/extlinux,tmp,etc}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$here/init.sh" "$root/sbin/lminit"
cp "$kernel" "$root/boot/vmlinuz"
cp "$initrd" "$root/boot/initrd.img"
cat >"$root/boot/extlinux/extlinux.conf" <<CFG
DEFAULT live
SERIAL 0 115200
TIMEOUT 1
PROMPT 0
LABEL live
	LINUX /boot/vmlinuz
	INITRD /boot/initrd.img
	APPEND root=/dev/vda1 rw init=/sbin/lminit console=ttyS0 panic=-1 lmtoken=baked-in
CFG
guest_disk "$root" "$out" "$size" \
	^64bit,^metadata_csum,^extent,^flex_bg,^huge_file,^dir_index
echo "build-image: $out ($size MiB, kernel $kver)" >&2
