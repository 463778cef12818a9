#!/bin/bash
# An acknowledged write outlives kill -9 even before the checkpoint or
# an fsync recorded it (the guest journal).  Then a guest against a
# model across kill -9: random unaligned writes,
# discards, zero ranges, fsyncs, read checks and page cache drops on the
# mounted image while the stream runs; the daemon killed at random
# moments.  After every remount, whatever was fsync'ed must be there and
# every other block must hold its synced content or the result of some
# prefix of the unsynced operations (tests/lib/guestmodel.py).  Some
# rounds let the stream finish first (writes over present blocks, then
# the crash: --verify must not cry wolf), some unmount cleanly and mount
# again at once (the old daemon must be gone first), and one starts a
# second daemon on the same target (refused, naming the first).  At the
# end the stream completes, --verify says verified, and the image and the
# target equal the model.  ROUNDS (default 10; tests/soak runs 100);
# BLOCK_SIZE (default 4096) is the mount's --block-size.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
rounds=${ROUNDS:-10}
gm() { python3 "$TESTS_DIR/lib/guestmodel.py" "$@"; }
# (not the function: $! must be python itself, to be killed)
GM="python3 $TESTS_DIR/lib/guestmodel.py"
make_image "$T/src.img" 48 31
$PROG pack --lazy-chunk-dirs -q --id 5 "$T/src.img:disk" "$T/ds"
cp "$T/src.img" "$T/model"
: >"$T/journal"
seed=${SEED:-$RANDOM}
note "seed $seed, $rounds rounds"
RANDOM=$seed
export BLOCK_SIZE=${BLOCK_SIZE:-4096}
mopts=(--target "$T/tgt.raw" --connections 2 --limit-rate 40M
	--block-size "$BLOCK_SIZE")
old_pid=

# Unsynced writes over absent blocks, the daemon killed at once.
lm_mount "$T/mnt" --target "$T/ack.raw" --no-stream --block-size "$BLOCK_SIZE" \
	"$T/ds" vm/5
head -c 12345 /dev/urandom >"$T/w"
dd if="$T/w" of="$T/mnt/disk.img" bs=1 seek=409700 conv=notrunc status=none
kill -9 $LM_PID; wait $LM_PID 2>/dev/null || true
fusermount3 -u -z "$T/mnt"
lm_mount "$T/mnt" --target "$T/ack.raw" --no-stream --block-size "$BLOCK_SIZE" \
	"$T/ds" vm/5
cmp "$T/w" <(tail -c +409701 "$T/mnt/disk.img" | head -c 12345) ||
	fail "an acknowledged write was lost to kill -9"
lm_umount "$T/mnt"

lm_mount "$T/mnt" "${mopts[@]}" "$T/ds" vm/5
for ((r = 1; r <= rounds; r++)); do
	gm resolve "$T/mnt/disk.img" "$T/model" "$T/journal" ||
		fail "round $r: the remount lost or garbled data"
	if [ $((r % 3)) = 0 ]; then
		# Everything present first: writes then go over present
		# blocks, the case where an unsynced write outlives the crash.
		lm_wait_complete "$T/mnt" 60
	fi
	if [ "$r" = 2 ]; then
		mkdir -p "$T/mnt2"
		expect_fail timeout -k 5 30 $PROG mount -f "${mopts[@]}" "$T/ds" vm/5 "$T/mnt2"
		assert_one_line_error
		assert_err_contains "in use by PID $(lm_server_pid "$T/mnt")"
		mountpoint -q "$T/mnt2" && fail "a second daemon mounted"
	fi
	$GM run "$T/mnt/disk.img" "$T/model" "$T/journal" 30 $((seed + r)) &
	gpid=$!
	sleep "0.$((RANDOM % 9 + 1))"
	if [ $((r % 4)) = 0 ]; then
		# A clean unmount, and at once a new mount of the same target.
		kill $gpid 2>/dev/null || true
		wait $gpid || [ $? = 143 ] || fail "guest model failed"
		old_pid=$LM_PID
		# The killed guest's file may take a moment to close.
		for _ in $(seq 1 50); do
			fusermount3 -u "$T/mnt" 2>/dev/null && break
			sleep 0.1
		done
		mountpoint -q "$T/mnt" && fail "cannot unmount"
		lm_mount "$T/mnt" "${mopts[@]}" "$T/ds" vm/5
		# The old daemon may still be exiting, but not holding the target.
		if ls -l "/proc/$old_pid/fd" 2>/dev/null | grep -q tgt.raw; then
			fail "new mount up while the old daemon had the target"
		fi
		wait "$old_pid" || fail "old daemon exited with $?"
		continue
	fi
	kill -9 $LM_PID
	wait $LM_PID 2>/dev/null || true
	wait $gpid || { tail -5 "$T/lm.log"; fail "round $r: a read through the mount differed from the model"; }
	fusermount3 -u -z "$T/mnt" 2>/dev/null || true
	lm_mount "$T/mnt" "${mopts[@]}" "$T/ds" vm/5
done
gm resolve "$T/mnt/disk.img" "$T/model" "$T/journal" ||
	fail "last remount lost or garbled data"
lm_umount "$T/mnt"

# Final round: no crash; finish, verify, compare everything.
lm_mount "$T/mnt" --target "$T/tgt.raw" --block-size "$BLOCK_SIZE" --verify \
	"$T/ds" vm/5
lm_wait_complete "$T/mnt" 120
[ "$(lm_state "$T/mnt")" = verified ] ||
	{ cat "$T/lm.log"; fail "state after the crashes: $(lm_state "$T/mnt")"; }
gm compare "$T/mnt/disk.img" "$T/model" || fail "mounted image vs model"
lm_umount "$T/mnt"
gm compare "$T/tgt.raw" "$T/model" || fail "target vs model"
echo ok
