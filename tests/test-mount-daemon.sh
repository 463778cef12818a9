#!/bin/bash
# Without -f the daemon detaches only once the mount is up: the command
# exits 0 with the image in place, or 1 with the reason on the terminal.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
make_image "$T/a.img" 8 1
make_image "$T/b.img" 8 2
$PROG pack --lazy-chunk-dirs -q --id 1 "$T/a.img:disk" "$T/ds"
$PROG pack --lazy-chunk-dirs -q --id 2 "$T/b.img:disk" "$T/ds"
mkdir -p "$T/mnt"
cleanup_fn "fusermount3 -u -z '$T/mnt'"
$PROG mount --target "$T/t.raw" "$T/ds" vm/1 "$T/mnt" 2>"$T/err" ||
	fail "daemon start: $(cat "$T/err")"
mountpoint -q "$T/mnt" || fail "not mounted after the command returned"
cmp "$T/a.img" "$T/mnt/disk.img" || fail "daemon serves wrong data"
pid=$(pgrep -f "mount --target $T/t.raw") || fail "no daemon process"
fusermount3 -u "$T/mnt"
for _ in $(seq 1 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "daemon still running after unmount"
expect_fail $PROG mount --target "$T/t.raw" "$T/ds" vm/2 "$T/mnt"
assert_one_line_error; assert_err_contains "t.raw.lmstate"
mountpoint -q "$T/mnt" && fail "mounted despite the error"
echo ok
