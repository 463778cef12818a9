#!/bin/bash
# map/unmap: one archive mounted live and attached to a loop device with
# direct I/O.  fio writes and verifies through the device; after unmap
# the device is gone, the mount ended and the target holds what the
# device showed.  A read-only map reads the backup's bytes and refuses
# writes; unmap refuses what is not a map.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
requires_root
requires fio
requires losetup
[ -e /dev/loop-control ] || skip "no loop devices"
make_image "$T/src.img" 64 9
$PROG pack --lazy-chunk-dirs -q --id 5 "$T/src.img:drive-scsi0" "$T/ds"
mkdir -p /run/pbs-livemount/map
before=$(ls /run/pbs-livemount/map | wc -l)

dev=$($PROG map --target "$T/tgt.raw" "$T/ds" vm/5 drive-scsi0 2>"$T/map.log") ||
	{ cat "$T/map.log"; fail "map"; }
cleanup_fn "$PROG unmap $dev"
[ -b "$dev" ] || fail "map printed '$dev', not a block device"
name=${dev#/dev/}
[ "$(cat /sys/block/$name/loop/dio)" = 1 ] || fail "no direct I/O on $dev"
[ "$(blockdev --getsize64 "$dev")" = $((64 << 20)) ] || fail "size of $dev"
cmp <(head -c $((64 << 20)) "$dev") "$T/src.img" || fail "the device differs from the backup"
fio --name=map --filename="$dev" --rw=randwrite --bs=4k --size=16m \
	--offset=8m --direct=1 --ioengine=libaio --iodepth=8 \
	--verify=crc32c --do_verify=1 --randrepeat=0 --verify_state_save=0 >"$T/fio.log" 2>&1 ||
	{ tail -20 "$T/fio.log"; fail "fio through the loop device"; }
sum=$(md5sum <"$dev")
$PROG unmap "$dev" || fail "unmap"
[ -e /sys/block/$name/loop/backing_file ] && fail "$dev still attached"
mnt=$(sed -n 's/.*mounted on \(.*\))$/\1/p' "$T/map.log")
[ -n "$mnt" ] || fail "map did not say where it mounted: $(cat "$T/map.log")"
mountpoint -q "$mnt" && fail "still mounted after unmap"
[ -d "$mnt" ] && fail "unmap left its mount point"
[ "$(md5sum <"$T/tgt.raw")" = "$sum" ] || fail "the target is not what the device held"
note "fio wrote and verified through $dev; the target holds it"

# Mapped again: the target resumes (a mount with state), same bytes.
dev=$($PROG map --target "$T/tgt.raw" "$T/ds" vm/5 drive-scsi0 2>/dev/null) || fail "map again"
[ "$(md5sum <"$dev")" = "$sum" ] || fail "mapped again, the device differs"
$PROG unmap "$dev" || fail "unmap again"

dev=$($PROG map --read-only "$T/ds" vm/5 drive-scsi0.img.fidx 2>/dev/null) || fail "map --read-only"
[ "$(blockdev --getro "$dev")" = 1 ] || fail "a read-only map is writable"
cmp <(cat "$dev") "$T/src.img" || fail "read-only map differs"
dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none 2>/dev/null &&
	fail "wrote to a read-only map"
$PROG unmap "$dev" || fail "unmap of the read-only map"

# Not a map: refused, nothing detached.
truncate -s 1M "$T/other.img"
other=$(losetup -f --show "$T/other.img")
cleanup_fn "losetup -d $other"
expect_fail $PROG unmap "$other"
grep -q "not a pbs-livemount map" "$T/err" || fail "unmap of a foreign loop: $(cat "$T/err")"
[ -e /sys/block/${other#/dev/}/loop/backing_file ] || fail "a foreign loop was detached"
expect_fail $PROG unmap "$T/other.img"
grep -q "not a loop device" "$T/err" || fail "unmap of a file: $(cat "$T/err")"
expect_fail $PROG map -f "$T/ds" vm/5 drive-scsi0
expect_fail $PROG map --read-only "$T/ds" vm/5 drive-nope
grep -q "drive-nope" "$T/err" || fail "map of a missing archive: $(cat "$T/err")"
[ "$(ls /run/pbs-livemount/map | wc -l)" = "$before" ] || fail "a failed map left its mount point"
echo ok
