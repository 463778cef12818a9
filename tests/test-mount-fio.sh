#!/bin/bash
# fio random read/write with --verify=crc32c, mixed and unaligned sizes,
# while the streamer runs; after completion and unmount fio --verify_only
# passes on the target and every byte the guest never wrote equals the
# backup.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
requires fio
make_image "$T/src.img" 64 41
$PROG pack --lazy-chunk-dirs -q --id 3 "$T/src.img:disk" "$T/ds"
lm_mount "$T/mnt" --target "$T/tgt.raw" --connections 4 "$T/ds" vm/3

job() {
	fio --name=guest --filename="$1" --rw=randrw --rwmixread=50 \
		--bssplit=512/10:3k/10:4k/40:64k/20:1m/20 --blockalign=512 \
		--offset=8m --size=40m --ioengine=psync \
		--fsync=32 --verify=crc32c --verify_fatal=1 --randseed=4242 \
		--randrepeat=1 --verify_state_save=0 "${@:2}"
}
job "$T/mnt/disk.img" --write_iolog="$T/iolog" --output="$T/fio1.txt" ||
	{ cat "$T/fio1.txt"; fail "fio verify through the mount"; }
# An O_DIRECT pass, as QEMU's cache=none does.
fio --name=direct --filename="$T/mnt/disk.img" --rw=randread --bs=64k \
	--direct=1 --size=60m --io_size=16m --ioengine=psync \
	--output="$T/fio2.txt" || { cat "$T/fio2.txt"; fail "O_DIRECT reads"; }
lm_wait_complete "$T/mnt" 120
lm_umount "$T/mnt"
job "$T/tgt.raw" --verify_only --output="$T/fio3.txt" ||
	{ cat "$T/fio3.txt"; fail "fio --verify_only on the target"; }
python3 "$TESTS_DIR/lib/untouched.py" "$T/src.img" "$T/tgt.raw" "$T/iolog"
echo ok
