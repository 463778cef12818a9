#!/bin/bash
# restore never replaces what the user did not name: every kind of
# TARGET (a new file, a file with and without data, a symlink, a FIFO,
# a socket, a character device, anything else under /dev, standard
# output, a loop device with and without data); a restore killed half
# way, into a file and into a device, resumes from what it had written.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
export PBSLM_STATE_DIR=$T/state
make_image "$T/src.img" 64 23
$PROG pack --lazy-chunk-dirs -q --id 4 --time 1700000000 "$T/src.img:disk" "$T/ds"
snap=vm/4/2023-11-14T22:13:20Z
r() { $PROG restore -q "$T/ds" $snap disk "$@"; }

# A new file; then the same path again: it holds data now.
r "$T/out"
cmp "$T/src.img" "$T/out" || fail "restore differs"
[ ! -e "$T/out.partial" ] && [ ! -e "$T/out.partial.lmstate" ] ||
	fail "partial or state left after success"
echo precious >"$T/old"
expect_fail r "$T/old"
assert_one_line_error; assert_err_contains "holds data"; assert_err_contains "--overwrite"
[ "$(cat "$T/old")" = precious ] || fail "a file with data was changed"
[ ! -e "$T/old.partial" ] || fail "partial after a refusal"
r --overwrite "$T/old"
cmp "$T/src.img" "$T/old" || fail "--overwrite restore differs"
# An empty file (no data) is taken as it is.
: >"$T/empty"
r "$T/empty"; cmp "$T/src.img" "$T/empty" || fail "empty file target"

# A symlink is never replaced, nor what it points at written.
echo kept >"$T/pointed"
ln -s "$T/pointed" "$T/link"
expect_fail r "$T/link"
assert_one_line_error; assert_err_contains "symbolic link to '$T/pointed'"
[ -L "$T/link" ] && [ "$(cat "$T/pointed")" = kept ] || fail "symlink or file changed"
expect_fail r /dev/stdout
assert_one_line_error; assert_err_contains "'-'"
[ -L /dev/stdout ] || fail "/dev/stdout is no longer a symlink"

# A FIFO is refused at once (it used to hang), so are sockets, character
# devices and what is under /dev but not a block device; nothing is made.
mkfifo "$T/fifo"
timeout 10 $PROG restore -q "$T/ds" $snap disk "$T/fifo" 2>"$T/err" &&
	fail "FIFO accepted"
[ $? != 124 ] || fail "FIFO target hangs"
assert_one_line_error; assert_err_contains "FIFO"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/sock"
expect_fail r "$T/sock"; assert_one_line_error; assert_err_contains "socket"
expect_fail r /dev/null; assert_one_line_error; assert_err_contains "character device"
expect_fail r /dev/pbslm-no-such-disk
assert_one_line_error; assert_err_contains "no such block device"
[ ! -e /dev/pbslm-no-such-disk ] && [ ! -e /dev/pbslm-no-such-disk.partial ] ||
	fail "a file was created under /dev"
expect_fail r "$T"; assert_one_line_error; assert_err_contains "directory"
[ ! -e "$T/-" ] || fail "a file named -"

# "-": the image on standard output, in order; never onto a terminal.
r - | cmp - "$T/src.img" || fail "stdout restore differs"
[ ! -e ./- ] && [ ! -e "$T/-" ] || fail "a file named '-' was made"
python3 "$TESTS_DIR/lib/onpty.py" -- $PROG restore "$T/ds" $snap disk - \
	>"$T/tty" && fail "an image written to a terminal"
grep -q "terminal" "$T/tty" || fail "tty message: $(cat "$T/tty")"
# A reader that stops early is an error, not a hang or a signal death.
set +o pipefail
r - 2>"$T/err" | head -c 1000 >/dev/null
set -o pipefail
grep -q "Broken pipe" "$T/err" || fail "early reader: $(cat "$T/err")"

# Killed half way (a slow link): the same command resumes from what it
# had written, and fetches only the rest.
nginx_start "$T/ds"
slow="--limit-rate 4M --connections 2 $NGX_URL $snap disk"
$PROG restore $slow "$T/resumed" 2>"$T/slow.log" &
pid=$!
# wait_chunk_in STATE...: the first record may come before any chunk is
# in (a slow build, under a sanitizer, a fresh machine): wait for one
# more, which says some chunk is.  STATE may be a glob, not yet there.
wait_chunk_in() {
	local first= size f
	for _ in $(seq 1 200); do
		f=$(ls $1 2>/dev/null | head -1 || true)
		size=$( [ -n "$f" ] && stat -c %s "$f" 2>/dev/null || echo 0)
		[ "$size" -gt 4096 ] && [ -z "$first" ] && first=$size
		[ -n "$first" ] && [ "$size" -gt "$first" ] && return 0
		sleep 0.05
	done
	return 0
}
wait_chunk_in "$T/resumed.partial.lmstate"
sleep 0.3
kill -9 $pid; wait $pid 2>/dev/null || true
[ -e "$T/resumed.partial" ] || fail "no partial file after kill -9"
[ ! -e "$T/resumed" ] || fail "target in place before completion"
before=$(nginx_count '/.chunks/')
$PROG restore "$NGX_URL" $snap disk "$T/resumed" 2>"$T/resume.log" ||
	fail "resume: $(cat "$T/resume.log")"
cat "$T/resume.log"
grep -Eq "resuming .*: [1-9][0-9]* of [0-9]+ chunks" "$T/resume.log" ||
	fail "did not resume: $(cat "$T/resume.log")"
cmp "$T/src.img" "$T/resumed" || fail "resumed restore differs"
after=$(nginx_count '/.chunks/')
total=$(find "$T/ds/.chunks" -type f | wc -l)
[ $((after - before)) -lt "$total" ] ||
	fail "the resumed restore fetched $((after - before)) of $total chunks"
[ ! -e "$T/resumed.partial.lmstate" ] || fail "state left after resume"

# Block devices (loop): zeros are taken, data needs --overwrite, a
# symlink to a device is the device (/dev/vg/lv), a killed restore
# resumes from its state under the state directory.
requires_root
requires losetup
truncate -s 80M "$T/dev.img"
loop=$(losetup -f --show "$T/dev.img") || skip "no loop device"
cleanup_fn "losetup -d $loop"
ln -s "$loop" "$T/lv"
r "$T/lv"
cmp -n $((64 << 20)) "$T/src.img" "$loop" || fail "device restore differs"
ls "$T/state" | grep -q . && fail "state left after a device restore: $(ls "$T/state")"
expect_fail r "$loop"
assert_one_line_error; assert_err_contains "holds data"; assert_err_contains "offset"
r --overwrite "$loop"
cmp -n $((64 << 20)) "$T/src.img" "$loop" || fail "--overwrite device restore"
dd if=/dev/zero of="$loop" bs=1M count=80 status=none
$PROG restore $slow "$loop" 2>"$T/slow.log" &
pid=$!
wait_chunk_in "$T/state/restore-*"
sleep 0.3
kill -9 $pid; wait $pid 2>/dev/null || true
ls "$T/state"/restore-loop-dev.img-* >/dev/null || fail "no device state: $(ls "$T/state")"
# It holds data now, but the state proves it is ours: no --overwrite.
$PROG restore "$NGX_URL" $snap disk "$loop" 2>"$T/resume.log" ||
	fail "device resume: $(cat "$T/resume.log")"
grep -q "resuming" "$T/resume.log" || fail "device did not resume: $(cat "$T/resume.log")"
cmp -n $((64 << 20)) "$T/src.img" "$loop" || fail "resumed device restore"
echo ok
