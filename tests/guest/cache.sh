# Sourced by the guest builders.
#
# guest_cached NAME KEY BUILDER [DIR]
# prints DIR/NAME-KEY.img, built first with "BUILDER OUT" when missing
# (older NAME-*.img removed).  DIR: PBSLM_CACHE or
# /var/cache/pbs-livemount-tests.
guest_cached() {
	local name=$1 key=$2 builder=$3
	local dir=${4:-${PBSLM_CACHE:-/var/cache/pbs-livemount-tests}}
	local out=$dir/$name-$key.img
	if [ ! -f "$out" ]; then
		mkdir -p "$dir"
		rm -f "$dir/$name"-*.img
		"$builder" "$out.tmp" >&2
		mv "$out.tmp" "$out"
	fi
	echo "$out"
}

# guest_disk ROOT OUT SIZE_MIB FEATURES: a raw disk OUT with an MBR
# (syslinux mbr.bin) and one bootable ext4 partition from 1 MiB on,
# made from the tree ROOT (mkfs.ext4 -O FEATURES, which extlinux must
# read) with extlinux installed in ROOT/boot/extlinux.  Uses the
# caller's $work and $mnt and sets $loop while attached, for the
# caller's cleanup.
guest_disk() {
	local root=$1 out=$2 size=$3 features=$4
	local part=$work/part.img
	truncate -s $(((size - 1) << 20)) "$part"
	mkfs.ext4 -q -F -O "$features" -L lmroot -d "$root" "$part"
	loop=$(losetup -f --show "$part")
	mkdir -p "$mnt"
	mount "$loop" "$mnt"
	extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1
	umount "$mnt"
	losetup -d "$loop"
	loop=
	truncate -s $((size << 20)) "$out"
	printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$out"
	dd if="$part" of="$out" bs=1M seek=1 conv=notrunc,sparse status=none
	dd if=/usr/lib/syslinux/mbr/mbr.bin of="$out" bs=440 count=1 \
		conv=notrunc status=none
	rm -f "$part"
}
