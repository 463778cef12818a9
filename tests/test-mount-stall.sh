#!/bin/bash
# A target that cannot be written (here: a tmpfs that fills up) stalls
# the stream with the reason in .status, in `status` and in the log the
# user reads (--log-file for a daemon, stderr until it detaches); the
# stream resumes by itself when space appears and completes exact.
# SIGHUP reopens the log file and does not unmount.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
requires_root
head -c $((40 << 20)) /dev/urandom >"$T/src.img"
$PROG pack --lazy-chunk-dirs -q --id 3 --time 1700000000 "$T/src.img:disk" "$T/ds"
mkdir -p "$T/small" "$T/mnt"
mount -t tmpfs -o size=16m tmpfs "$T/small" || skip "cannot mount a tmpfs"
cleanup_fn "umount -l '$T/small'"
log=$T/daemon.log

# Before the daemon detaches, errors go to the terminal and the file.
echo data >"$T/small/busy.raw"
expect_fail $PROG mount --log-file "$log" --target "$T/small/busy.raw" \
	"$T/ds" vm/3 "$T/mnt"
assert_err_contains "holds data"
grep -q "holds data" "$log" || fail "the refusal is not in the log file"
rm "$T/small/busy.raw"

$PROG mount --log-file "$log" --target "$T/small/t.raw" "$T/ds" vm/3 "$T/mnt"
cleanup_fn "fusermount3 -u -z '$T/mnt'"
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$T/mnt/.status")
for _ in $(seq 1 100); do
	[ "$(lm_state "$T/mnt")" = stalled ] && break
	sleep 0.1
done
[ "$(lm_state "$T/mnt")" = stalled ] || fail "not stalled: $(cat "$T/mnt/.status")"
python3 - "$T/mnt/.status" <<'PY' || fail "status document: $(cat "$T/mnt/.status")"
import json, sys
d = json.load(open(sys.argv[1]))
assert "No space left on device" in d["stalled"], d
assert "t.raw" in d["stalled"], d
assert d["disks"][0]["eta"] == -1, d
PY
$PROG status "$T/mnt" >"$T/st"
head -1 "$T/st" | grep -q "stalled (cannot write target '$T/small/t.raw': No space left on device)" ||
	fail "status: $(cat "$T/st")"
grep -q "cannot write target '$T/small/t.raw': No space left on device" "$log" ||
	fail "the reason is not in the log file: $(cat "$log")"
[ "$(grep -c "No space left" "$log")" -le 2 ] || fail "logged once per chunk"

# SIGHUP: the log file is reopened (rotated), the mount stays.
mv "$log" "$log.1"
kill -HUP "$pid"
sleep 0.5
kill -0 "$pid" || fail "SIGHUP ended the daemon"
mountpoint -q "$T/mnt" || fail "SIGHUP unmounted"

# Room again: the stream goes on by itself and completes exact.
mount -o remount,size=64m "$T/small"
lm_wait_complete "$T/mnt" 60
grep -q "takes writes again" "$log" || fail "no resume line in the reopened log"
fusermount3 -u "$T/mnt"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
cmp "$T/src.img" "$T/small/t.raw" || fail "target differs after the stall"
grep -q "unmounted, state committed" "$log" || fail "log after SIGHUP"
echo ok
