#!/bin/bash
# Ownership and identity of a target: one daemon per target and state
# file (a second mount, a restore into it, a verify of it: refused,
# naming the holder's PID, nothing written); a state resumes only onto
# the target it was written for (deleted and re-created, truncated,
# truncated and grown again, copied: refused with the reason); a target
# that holds data and has no state is refused unless --overwrite; an
# empty sparse file and a zeroed device are taken as they are.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
make_image "$T/src.img" 16 61
$PROG pack --lazy-chunk-dirs -q --id 7 "$T/src.img:disk" "$T/ds"
size=$((16 << 20))
mkdir -p "$T/mnt2"
sum() { sha256sum "$1" | cut -c1-64; }

# refused CMD...: fails in one line naming $2 ($1 is a label).
refused() {
	local what=$1 needle=$2
	shift 2
	expect_fail timeout -k 5 30 "$@" >/dev/null
	assert_one_line_error
	assert_err_contains "$needle"
	note "$what: $(cat "$T/err")"
}

mkdir -p "$T/mnt2"
lm_mount "$T/mnt" --target "$T/tgt.raw" --no-stream "$T/ds" vm/7
head -c 8192 /dev/urandom | dd of="$T/mnt/disk.img" bs=4096 seek=10 \
	conv=notrunc,fsync status=none
before=$(sum "$T/tgt.raw")
refused "second mount" "in use by PID $(lm_server_pid "$T/mnt")" \
	$PROG mount -f --target "$T/tgt.raw" "$T/ds" vm/7 "$T/mnt2"
mountpoint -q "$T/mnt2" && fail "a second daemon mounted"
# The same state file with another target: the state is locked too.
refused "same state, other target" "in use by PID $(lm_server_pid "$T/mnt")" \
	$PROG mount -f --target "$T/other.raw" --state "$T/tgt.raw.lmstate" \
	"$T/ds" vm/7 "$T/mnt2"
refused "restore into a mounted target" "in use by PID $(lm_server_pid "$T/mnt")" \
	$PROG restore "$T/ds" vm/7 disk "$T/tgt.raw"
[ -e "$T/tgt.raw.partial" ] && fail "restore left a partial file"
refused "verify of a mounted target" "in use by PID $(lm_server_pid "$T/mnt")" \
	$PROG verify "$T/ds" vm/7 disk "$T/tgt.raw"
[ "$(sum "$T/tgt.raw")" = "$before" ] || fail "a refused command wrote the target"
lm_umount "$T/mnt"
# The rightful target resumes.
lm_mount "$T/mnt" --target "$T/tgt.raw" "$T/ds" vm/7
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"

# Deleted and re-created at the same path (often with the same inode).
ino=$(stat -c %i "$T/tgt.raw")
cp "$T/tgt.raw" "$T/saved.raw"
rm "$T/tgt.raw"
cp "$T/saved.raw" "$T/tgt.raw"
note "inode $ino, re-created as $(stat -c %i "$T/tgt.raw")"
before=$(sum "$T/tgt.raw")
refused "re-created target" "deleted and re-created" \
	$PROG mount -f --target "$T/tgt.raw" "$T/ds" vm/7 "$T/mnt2"
[ "$(sum "$T/tgt.raw")" = "$before" ] || fail "a refused mount wrote the target"

# Truncated to 0 bytes, with the state kept.
rm -f "$T/tgt.raw" "$T/tgt.raw.lmstate"
lm_mount "$T/mnt" --target "$T/tgt.raw" "$T/ds" vm/7
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
truncate -s 0 "$T/tgt.raw"
refused "truncated target" "truncated or replaced" \
	$PROG mount -f --target "$T/tgt.raw" "$T/ds" vm/7 "$T/mnt2"
[ "$(stat -c %s "$T/tgt.raw")" = 0 ] || fail "a refused mount grew the target"
# Truncated and grown again: same inode, same id, the data gone.
truncate -s $size "$T/tgt.raw"
refused "truncated and grown" "holds no data" \
	$PROG mount -f --target "$T/tgt.raw" "$T/ds" vm/7 "$T/mnt2"
# A copy, xattrs and all, moved into place: another file.
rm -f "$T/tgt.raw" "$T/tgt.raw.lmstate"
lm_mount "$T/mnt" --target "$T/tgt.raw" "$T/ds" vm/7
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cp --preserve=all "$T/tgt.raw" "$T/copy.raw"
mv "$T/copy.raw" "$T/tgt.raw"
refused "copied target" "not the file" \
	$PROG mount -f --target "$T/tgt.raw" "$T/ds" vm/7 "$T/mnt2"

# No state file, data in the target: refused, then --overwrite.
rm -f "$T/tgt.raw.lmstate"
before=$(sum "$T/tgt.raw")
refused "data, no state" "--overwrite" \
	$PROG mount -f --target "$T/tgt.raw" "$T/ds" vm/7 "$T/mnt2"
[ "$(sum "$T/tgt.raw")" = "$before" ] || fail "a refused mount wrote the target"
[ -e "$T/tgt.raw.lmstate" ] && fail "a refused mount left a state file"
lm_mount "$T/mnt" --target "$T/tgt.raw" --overwrite "$T/ds" vm/7
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cmp "$T/src.img" "$T/tgt.raw" || fail "--overwrite restore differs"

# An empty sparse file of the right size: taken without --overwrite.
rm -f "$T/tgt.raw" "$T/tgt.raw.lmstate"
truncate -s $size "$T/tgt.raw"
lm_mount "$T/mnt" --target "$T/tgt.raw" "$T/ds" vm/7
lm_umount "$T/mnt"

# A block device: zeroed is fine; one with data needs --overwrite.
requires losetup
truncate -s 32M "$T/blk"
loop=$(losetup -f --show "$T/blk") || skip "no loop device"
cleanup_fn "losetup -d $loop"
lm_mount "$T/mnt" --target "$loop" --state "$T/blk.lmstate" "$T/ds" vm/7
refused "second mount of a device" "in use" \
	$PROG mount -f --target "$loop" --state "$T/blk2.lmstate" "$T/ds" vm/7 \
	"$T/mnt2"
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
rm "$T/blk.lmstate"
refused "device with data, no state" "--overwrite" \
	$PROG mount -f --target "$loop" --state "$T/blk.lmstate" "$T/ds" vm/7 \
	"$T/mnt2"
lm_mount "$T/mnt" --target "$loop" --state "$T/blk.lmstate" --overwrite \
	"$T/ds" vm/7
lm_umount "$T/mnt"
echo ok
