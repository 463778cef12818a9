#!/bin/bash
# restore's pipeline: requests in flight found by measurement (they grow
# where the server is far, --connections fixes them), target writes
# queued to the writer (a full target fails with one line and resumes
# once there is room), and kill -9 at random points of a restore with
# every stage busy: each resume completes to the same bytes.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
export PBSLM_STATE_DIR=$T/state
make_image "$T/src.img" 96 31
$PROG pack -q --id 5 --time 1700000000 "$T/src.img:disk" "$T/ds"
snap=vm/5/2023-11-14T22:13:20Z
# Enough distinct chunks for the window to be measured a few times
# (1 MiB chunks: a candidate is measured between two measures of the
# best, and a win needs some 250 completions).
make_image "$T/big.img" 768 37
$PROG pack -q --id 6 --time 1700000000 --chunk-size 1M "$T/big.img:disk" "$T/ds"
big=vm/6/2023-11-14T22:13:20Z
nginx_start "$T/ds" --lua

# 400 ms a chunk: the window grows from where it starts (16): 16 in
# flight cover 40 chunks a second, fewer than the restore can take
# (even under ThreadSanitizer: some 110).
# The first doubling is only tried; 64 comes only once 32 beat 16
# measured before and after it.
nginx_fault "delay 400"
$PROG restore --debug fetch "$NGX_URL" $big disk "$T/far" 2>"$T/far.log" ||
	fail "restore: $(tail -5 "$T/far.log")"
cmp "$T/big.img" "$T/far" || fail "restore with the measured window differs"
grep -E "fetch: [0-9]+ requests in flight, was" "$T/far.log" |
	sed 's/^/  /' | head -5 || true
top=$(grep -Eo "fetch: [0-9]+ requests in flight" "$T/far.log" |
	grep -Eo "[0-9]+" | sort -n | tail -1 || true)
[ "${top:-0}" -ge 64 ] ||
	fail "the window never grew past 32 with 400 ms a chunk (top: ${top:-none})"
note "400 ms a chunk: the window reached $top"
rm -f "$T/far" "$T/big.img"
nginx_fault off
# --connections fixes it: no change is ever made.
$PROG restore --debug fetch --connections 3 "$NGX_URL" $big disk \
	"$T/fixed" 2>"$T/fixed.log" || fail "restore --connections 3"
! grep -q "requests in flight, was" "$T/fixed.log" ||
	fail "--connections 3 changed the window"
rm -f "$T/fixed"

# A full target: one line naming it, the partial file kept; with room
# again the same command resumes and completes.
mkdir "$T/small"
mount -t tmpfs -o size=40m tmpfs "$T/small" || skip "cannot mount tmpfs"
cleanup_fn umount -l "$T/small"
expect_fail $PROG restore -q "$NGX_URL" $snap disk "$T/small/out"
assert_err_contains "cannot write '$T/small/out.partial'"
assert_err_contains "No space left on device"
n=$(grep -c "cannot write" "$T/err")
[ "$n" -le 2 ] || fail "a full target said so $n times"
[ -e "$T/small/out.partial" ] || fail "no partial file kept after ENOSPC"
mount -o remount,size=200m "$T/small"
$PROG restore "$NGX_URL" $snap disk "$T/small/out" 2>"$T/room.log" ||
	fail "resume with room: $(cat "$T/room.log")"
grep -Eq "resuming .*: [1-9][0-9]* of [0-9]+ chunks" "$T/room.log" ||
	fail "did not resume after ENOSPC: $(cat "$T/room.log")"
cmp "$T/src.img" "$T/small/out" || fail "restore resumed after ENOSPC differs"

# kill -9 at random points, every stage busy (a slow link, the window
# measured): each run resumes what the last one made durable.
seed=${SEED:-$RANDOM}
note "kill points from seed $seed"
RANDOM=$seed
nginx_fault "delay 10"
for round in 1 2 3 4; do
	[ ! -e "$T/k" ] || break	# done before the kills ran out
	$PROG restore -q --limit-rate 2M "$NGX_URL" $snap disk "$T/k" \
		2>"$T/k$round.log" &
	pid=$!
	sleep "0.$((RANDOM % 9 + 1))"
	kill -9 $pid 2>/dev/null || note "round $round ended before its kill"
	wait $pid 2>/dev/null || true
	! grep -v "resuming" "$T/k$round.log" | grep -q . ||
		fail "round $round said: $(cat "$T/k$round.log")"
done
nginx_fault off
[ -e "$T/k" ] || $PROG restore "$NGX_URL" $snap disk "$T/k" 2>"$T/k.log" ||
	fail "final resume: $(cat "$T/k.log")"
cmp "$T/src.img" "$T/k" || fail "restore killed 4 times differs (seed $seed)"
[ ! -e "$T/k.partial.lmstate" ] || fail "state left after the last resume"
echo ok
