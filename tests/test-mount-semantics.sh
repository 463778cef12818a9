#!/bin/bash
# Guest-visible semantics: unaligned writes (read-modify-write), discard,
# state mismatch refused, --read-only, a block-device target, and writes
# that never wait for the network.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
make_image "$T/src.img" 24 21
$PROG pack --lazy-chunk-dirs -q --id 8 "$T/src.img:disk" "$T/ds"
cp "$T/src.img" "$T/expect.img"

lm_mount "$T/mnt" --target "$T/tgt.raw" --no-stream "$T/ds" vm/8
img=$T/mnt/disk.img
# Unaligned write inside an absent block, one across a block boundary,
# one across a chunk boundary.
for spec in "1000 10" "4090 20" "$((4194304 - 7)) 30" "$((9 * 1048576 + 3)) 100000"; do
	set -- $spec
	head -c "$2" /dev/urandom >"$T/w"
	dd if="$T/w" of="$img" bs=1 seek="$1" conv=notrunc status=none
	dd if="$T/w" of="$T/expect.img" bs=1 seek="$1" conv=notrunc status=none
done
cmp "$T/expect.img" "$img" || fail "after unaligned writes"
# Discard 1 MiB at 2 MiB: reads as zeros afterwards.
fallocate -p -o $((2 << 20)) -l $((1 << 20)) "$img"
dd if=/dev/zero of="$T/expect.img" bs=1M seek=2 count=1 conv=notrunc status=none
cmp "$T/expect.img" "$img" || fail "after discard"
sync "$img"
lm_umount "$T/mnt"

# Remount: the writes and the discard persist; stream to completion.
lm_mount "$T/mnt" --target "$T/tgt.raw" "$T/ds" vm/8
cmp "$T/expect.img" "$img" || fail "after remount"
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cmp "$T/expect.img" "$T/tgt.raw" || fail "target after completion"

# A state file that belongs to another backup is refused, by name.
make_image "$T/other.img" 24 99
$PROG pack --lazy-chunk-dirs -q --id 9 "$T/other.img:disk" "$T/ds"
mkdir -p "$T/mnt2"
expect_fail $PROG mount -f --target "$T/tgt.raw" "$T/ds" vm/9 "$T/mnt2"
assert_err_contains "tgt.raw.lmstate"
mountpoint -q "$T/mnt2" && fail "mounted despite the mismatch"

# --read-only: no target, on-demand reads, writes refused.
lm_mount "$T/mnt" --read-only "$T/ds" vm/9
cmp "$T/other.img" "$T/mnt/disk.img" || fail "read-only mount differs"
if echo x | dd of="$T/mnt/disk.img" conv=notrunc status=none 2>/dev/null; then
	fail "write to a read-only mount succeeded"
fi
lm_umount "$T/mnt"

# A loop device as the target.
requires losetup
truncate -s 32M "$T/blk"
loop=$(losetup -f --show "$T/blk") || skip "no loop device"
cleanup_fn "losetup -d $loop"
lm_mount "$T/mnt" --target "$loop" --state "$T/blk.lmstate" "$T/ds" vm/9
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cmp -n $((24 << 20)) "$T/other.img" "$loop" || fail "block device target"
echo ok
