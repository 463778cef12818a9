#!/bin/bash
# Where a mount may go, and what a failed or dead mount leaves: the mount
# point must be an empty directory that is not already a FUSE mount
# (refusals name what is wrong); a mount that fails removes the targets
# and state files it created and nothing that was there before; a mount
# whose daemon died says to run fusermount3 -u; a block device's state
# lives under the state directory, not beside its /dev node.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
export PBSLM_STATE_DIR=$T/state
make_image "$T/a.img" 24 5
$PROG pack --lazy-chunk-dirs -q --id 1 --time 1700000000 "$T/a.img:disk" "$T/ds"
mnt=$T/mnt
mkdir -p "$mnt"
m() { timeout -k 5 30 $PROG mount -f "$@"; }

# Mount points: a file, a directory with files, a missing one.
echo x >"$T/file"
expect_fail m --target "$T/t.raw" "$T/ds" vm/1 "$T/file"
assert_one_line_error; assert_err_contains "not a directory"
mkdir "$T/full"; echo x >"$T/full/keep"
expect_fail m --target "$T/t.raw" "$T/ds" vm/1 "$T/full"
assert_one_line_error; assert_err_contains "not empty"
[ -e "$T/full/keep" ] || fail "a file in the mount point went"
expect_fail m --target "$T/t.raw" "$T/ds" vm/1 "$T/nodir"
assert_one_line_error; assert_err_contains "No such file"
[ ! -e "$T/t.raw" ] && [ ! -e "$T/t.raw.lmstate" ] || fail "target made for a refused mount"

# Already mounted: by this program (named by PID), then by another FUSE
# file system.
lm_mount "$mnt" --target "$T/t.raw" --no-stream "$T/ds" vm/1
expect_fail m --target "$T/u.raw" "$T/ds" vm/1 "$mnt"
assert_one_line_error; assert_err_contains "already mounted by pbs-livemount PID $LM_PID"
[ ! -e "$T/u.raw" ] || fail "a target was made for a refused mount"
mountpoint -q "$mnt" && cmp -n 4096 "$T/a.img" "$mnt/disk.img" || fail "first mount hurt"

# Dead: the daemon is killed; status and mount say what to do.
kill -9 $LM_PID; wait $LM_PID 2>/dev/null || true
expect_fail $PROG status "$mnt"
assert_one_line_error; assert_err_contains "has exited; run fusermount3 -u $mnt"
expect_fail m --target "$T/t.raw" "$T/ds" vm/1 "$mnt"
assert_one_line_error; assert_err_contains "has exited; run fusermount3 -u $mnt"
fusermount3 -u "$mnt"
lm_mount "$mnt" --target "$T/t.raw" --no-stream "$T/ds" vm/1
cmp "$T/a.img" "$mnt/disk.img" || fail "the mount after the crash"
lm_umount "$mnt"

# A mount that fails after opening its targets (a FUSE option the kernel
# refuses) removes the target and state it created, not older ones.
expect_fail m --target "$T/new.raw" -o no_such_fuse_option "$T/ds" vm/1 "$mnt"
[ ! -e "$T/new.raw" ] && [ ! -e "$T/new.raw.lmstate" ] ||
	fail "a failed mount left its target or state: $(ls "$T")"
expect_fail m --target-dir "$T/tdir" -o no_such_fuse_option "$T/ds" vm/1 "$mnt"
[ ! -e "$T/tdir" ] || fail "a failed mount left its --target-dir: $(ls -R "$T/tdir")"
cp "$T/t.raw" "$T/t.copy"; cp "$T/t.raw.lmstate" "$T/state.copy"
expect_fail m --target "$T/t.raw" -o no_such_fuse_option "$T/ds" vm/1 "$mnt"
cmp "$T/t.raw" "$T/t.copy" && cmp "$T/t.raw.lmstate" "$T/state.copy" ||
	fail "a failed mount changed an existing target or state"

# SIGHUP (a closed terminal, a log rotation) does not unmount.
lm_mount "$mnt" --target "$T/t.raw" --no-stream "$T/ds" vm/1
kill -HUP $LM_PID
sleep 0.5
kill -0 $LM_PID || fail "SIGHUP killed the daemon"
mountpoint -q "$mnt" || fail "SIGHUP unmounted"
cmp "$T/a.img" "$mnt/disk.img" || fail "the mount after SIGHUP"
lm_umount "$mnt"

# A block device's state: under the state directory, named by the
# device; an old one beside the /dev node is moved there.
requires_root
requires losetup
truncate -s 32M "$T/blk"
loop=$(losetup -f --show "$T/blk") || skip "no loop device"
cleanup_fn "losetup -d $loop; rm -f $loop.lmstate"
lm_mount "$mnt" --target "$loop" --no-stream "$T/ds" vm/1
dd if=/dev/urandom of="$mnt/disk.img" bs=4096 count=4 seek=7 conv=notrunc,fsync status=none
dd if="$mnt/disk.img" of="$T/want" bs=1M count=24 status=none
lm_umount "$mnt"
[ ! -e "$loop.lmstate" ] || fail "state beside the device node"
st=$(ls "$PBSLM_STATE_DIR"/loop-blk-*.lmstate) || fail "no state: $(ls "$PBSLM_STATE_DIR")"
# As an older version left it: beside /dev/loopN.
mv "$st" "$loop.lmstate"
lm_mount "$mnt" --target "$loop" --no-stream "$T/ds" vm/1
[ -e "$st" ] && [ ! -e "$loop.lmstate" ] || fail "the old state was not moved"
grep -q "moved to '$st'" "$T/lm.log" || fail "the move was not logged"
cmp "$T/want" "$mnt/disk.img" || fail "the guest's writes are lost after the move"
lm_umount "$mnt"
echo ok
