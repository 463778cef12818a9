#!/bin/bash
# kill -9 of the daemon at random moments under fsync'ed guest writes:
# every remount resumes, no fsync'ed write is lost, the stream completes
# and the end state is exact.  ROUNDS (default 10; tests/soak runs 100).
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
rounds=${ROUNDS:-10}
make_image "$T/src.img" 48 31
$PROG pack -q --id 5 "$T/src.img:disk" "$T/ds"
journal=$T/journal
: >"$journal"
seed=${SEED:-$RANDOM}
note "seed $seed, $rounds rounds"
RANDOM=$seed

for ((r = 1; r <= rounds; r++)); do
	lm_mount "$T/mnt" --target "$T/tgt.raw" --connections 2 \
		--limit-rate 40M "$T/ds" vm/5
	python3 "$TESTS_DIR/lib/crashwriter.py" resolve "$T/mnt/disk.img" "$journal"
	python3 "$TESTS_DIR/lib/crashwriter.py" write "$T/mnt/disk.img" \
		"$journal" 30 $((seed + r)) &
	wpid=$!
	sleep "0.$((RANDOM % 9 + 1))"
	kill -9 $LM_PID
	wait $LM_PID 2>/dev/null || true
	wait $wpid || true
	fusermount3 -u -z "$T/mnt" 2>/dev/null || true
done

# Final round: no crash; finish the stream and check everything.
lm_mount "$T/mnt" --target "$T/tgt.raw" "$T/ds" vm/5
python3 "$TESTS_DIR/lib/crashwriter.py" resolve "$T/mnt/disk.img" "$journal"
lm_wait_complete "$T/mnt" 120
cp "$T/src.img" "$T/expect.img"
python3 "$TESTS_DIR/lib/crashwriter.py" check "$T/expect.img" \
	"$T/mnt/disk.img" "$journal" || fail "mounted image lost a write"
lm_umount "$T/mnt"
python3 "$TESTS_DIR/lib/crashwriter.py" check "$T/expect.img" \
	"$T/tgt.raw" "$journal" || fail "target lost a write"
echo ok
