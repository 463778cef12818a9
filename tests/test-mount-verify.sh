#!/bin/bash
# --verify: at completion every chunk the guest did not write is re-hashed
# against the backup; guest-written chunks (remembered across remounts)
# are left alone, and a chunk damaged in the target is named.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
make_image "$T/src.img" 32 91
$PROG pack --lazy-chunk-dirs -q --id 12 "$T/src.img:disk" "$T/ds"
lm_mount "$T/mnt" --target "$T/tgt.raw" --no-stream "$T/ds" vm/12
head -c 8192 /dev/urandom | dd of="$T/mnt/disk.img" bs=4096 seek=300 \
	conv=notrunc,fsync status=none
lm_umount "$T/mnt"
# The guest's chunk (1) was remembered across the remount.
lm_mount "$T/mnt" --target "$T/tgt.raw" --verify "$T/ds" vm/12
lm_wait_complete "$T/mnt" 60
[ "$(lm_state "$T/mnt")" = verified ] || fail "state: $(lm_state "$T/mnt")"
$PROG status --watch "$T/mnt" >/dev/null || fail "status --watch after verified"
lm_umount "$T/mnt"
# Damage chunk 5 behind the daemon's back: the next verify names it.
printf 'XXXX' | dd of="$T/tgt.raw" bs=1 seek=$((5 * 4194304 + 10)) \
	conv=notrunc status=none
lm_mount "$T/mnt" --target "$T/tgt.raw" --verify "$T/ds" vm/12
lm_wait_complete "$T/mnt" 60
[ "$(lm_state "$T/mnt")" = verify-failed ] || fail "state: $(lm_state "$T/mnt")"
if $PROG status --watch "$T/mnt" >/dev/null; then
	fail "status --watch exit 0 after verify-failed"
fi
lm_umount "$T/mnt"
grep -q "chunk 5 (offset 20971520)" "$T/lm.log" || fail "log: $(cat "$T/lm.log")"
grep -q "chunk 1 " "$T/lm.log" && fail "guest-written chunk 1 was verified"

# No false alarm after a crash: an unsynced write over present data
# outlives kill -9 of the daemon, and so must its "guest wrote here".
rm -f "$T/tgt.raw" "$T/tgt.raw.lmstate"
lm_mount "$T/mnt" --target "$T/tgt.raw" --verify "$T/ds" vm/12
lm_wait_complete "$T/mnt" 60
head -c 4096 /dev/urandom >"$T/w"
dd if="$T/w" of="$T/mnt/disk.img" bs=4096 seek=$((3 * 1024 + 5)) \
	conv=notrunc status=none
kill -9 $LM_PID
wait $LM_PID 2>/dev/null || true
fusermount3 -u -z "$T/mnt"
cmp -n 4096 -i 0:$(((3 * 1024 + 5) * 4096)) "$T/w" "$T/tgt.raw" ||
	skip "the unsynced write did not reach the target"
: >"$T/lm.log"
lm_mount "$T/mnt" --target "$T/tgt.raw" --verify "$T/ds" vm/12
lm_wait_complete "$T/mnt" 60
[ "$(lm_state "$T/mnt")" = verified ] ||
	fail "verify after kill -9: $(lm_state "$T/mnt"): $(cat "$T/lm.log")"
lm_umount "$T/mnt"
echo ok
