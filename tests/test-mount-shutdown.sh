#!/bin/bash
# Unmount and SIGTERM stop the daemon at once, whatever the store does:
# with every chunk request stalled and a slow --limit-rate, the daemon is
# gone within a few seconds of `fusermount3 -u` (not after the 60 s
# --remote-timeout), a guest read blocked on the store fails promptly
# after SIGTERM, the target does not change after the daemon is gone,
# and a mount started right after an unmount waits for the old daemon
# instead of racing it.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires_fuse
make_image "$T/src.img" 32 71
$PROG pack --lazy-chunk-dirs -q --id 9 "$T/src.img:disk" "$T/ds"
nginx_start "$T/ds" --lua
opts=(--target "$T/tgt.raw" --limit-rate 1M --remote-timeout 60 "$NGX_URL" vm/9)

# gone_within PID SECS: the process exits within SECS (it is ours: reaped).
gone_within() {
	local pid=$1 secs=$2 i
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
		ps -o stat= -p "$pid" | grep -q Z && { wait "$pid" 2>/dev/null; return 0; }
		sleep 0.1
	done
	return 1
}

# 1. Unmount while every transfer hangs.
nginx_fault "stall 0 120"
lm_mount "$T/mnt" "${opts[@]}"
sleep 1
start=$(date +%s%N)
fusermount3 -u "$T/mnt"
gone_within $LM_PID 5 || { cat "$T/lm.log"; fail "daemon still runs 5 s after unmount"; }
note "daemon gone $((($(date +%s%N) - start) / 1000000)) ms after the unmount"
grep -q "unmounted, state committed" "$T/lm.log" || fail "no final commit: $(cat "$T/lm.log")"
# Transfers cut short by the unmount are not errors to report.
grep -q "cannot read chunk" "$T/lm.log" &&
	fail "an unmount reported cancelled transfers: $(cat "$T/lm.log")"
sum=$(sha256sum <"$T/tgt.raw")
sleep 2
[ "$(sha256sum <"$T/tgt.raw")" = "$sum" ] || fail "the target changed after the daemon exited"

# 2. SIGTERM with a guest read blocked on a stalled chunk.
lm_mount "$T/mnt" "${opts[@]}"
dd if="$T/mnt/disk.img" of=/dev/null bs=1M skip=20 count=1 iflag=direct \
	2>"$T/dd.err" &
ddpid=$!
sleep 1
kill -0 $ddpid 2>/dev/null || fail "the read did not wait for the stalled store"
start=$(date +%s%N)
kill -TERM $LM_PID
gone_within $LM_PID 5 || fail "daemon still runs 5 s after SIGTERM"
gone_within $ddpid 5 || fail "the blocked read still hangs 5 s after SIGTERM"
note "daemon and reader gone $((($(date +%s%N) - start) / 1000000)) ms after SIGTERM"
wait $ddpid && fail "the read succeeded with the store stalled"
fusermount3 -u -z "$T/mnt" 2>/dev/null || true

# 3. Unmount and mount again at once: the new daemon waits for the old.
nginx_fault "delay 200"
lm_mount "$T/mnt" "${opts[@]}"
old=$LM_PID
printf 'A%.0s' $(seq 1 4096) | dd of="$T/mnt/disk.img" bs=4096 seek=100 \
	conv=notrunc,fsync status=none
fusermount3 -u "$T/mnt"
lm_mount "$T/mnt" "${opts[@]}"
# The old daemon may still be exiting, but it must have let go of the
# target: nothing of it can write there any more.
if ls -l "/proc/$old/fd" 2>/dev/null | grep -q "tgt.raw"; then
	fail "mounted while the old daemon still had the target open"
fi
printf 'B%.0s' $(seq 1 4096) | dd of="$T/mnt/disk.img" bs=4096 seek=101 \
	conv=notrunc,fsync status=none
nginx_fault off
lm_wait_complete "$T/mnt" 120
lm_umount "$T/mnt"
python3 - "$T/src.img" "$T/tgt.raw" <<'PY' || fail "target after remounts"
import sys
src = bytearray(open(sys.argv[1], "rb").read())
src[100 * 4096:101 * 4096] = b"A" * 4096
src[101 * 4096:102 * 4096] = b"B" * 4096
assert open(sys.argv[2], "rb").read() == bytes(src), "target differs"
PY
echo ok
