#!/bin/bash
# The VM outlives the server: a guest against a model (random unaligned
# writes, discards, zeroing, fsyncs, reads and page cache drops) runs
# through the mount while the serving process is killed with SIGKILL at
# random moments, KILLS times (default 50): while the stream fetches and
# writes, state commits and compactions run, the guest reads, writes and
# syncs.  The guest sees no error at all and every read matches the
# model; then one restart (an upgrade in place) too; the stream
# completes, --verify passes and the target equals the model.  Then the
# limits: a server that dies at once every time is given up loudly, and
# killing the supervisor aborts the connection as a crash did.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
kills=${KILLS:-50}
GM="python3 $TESTS_DIR/lib/guestmodel.py"
make_image "$T/src.img" 48 37
$PROG pack --lazy-chunk-dirs -q --id 6 "$T/src.img:disk" "$T/ds"
cp "$T/src.img" "$T/model"
: >"$T/journal"
seed=${SEED:-$RANDOM}
RANDOM=$seed
note "seed $seed, $kills kills"
# The mount runs a copy of the binary, which restart's upgrade replaces.
cp "$PROG" "$T/bin"
# Slow enough that the stream runs for most of the kills.
PROG="$T/bin" lm_mount "$T/mnt" --target "$T/tgt.raw" --verify --connections 2 \
	--limit-rate 4M "$T/ds" vm/6
GM_NO_ERRORS=1 $GM run "$T/mnt/disk.img" "$T/model" "$T/journal" 36000 \
	$seed &
gpid=$!
cleanup_fn "kill $gpid"
# The guest ended early: its exit code, and what the servers logged.
guest_failed() {
	local rc=0
	wait $gpid || rc=$?
	tail -n 40 "$T/lm.log" >&2
	fail "the guest failed$1 (exit $rc)"
}
waits=()
for ((k = 1; k <= kills; k++)); do
	sleep "0.$((RANDOM % 7 + 2))"
	kill -0 $gpid 2>/dev/null || break
	srv=$(lm_server_pid "$T/mnt")
	kill -9 "$srv"
	t0=$(date +%s%N)
	# The guest's next request waits for the new server.
	until [ "$(lm_server_pid "$T/mnt")" != "$srv" ]; do sleep 0.01; done
	waits+=($((($(date +%s%N) - t0) / 1000000)))
done
kill -0 $gpid 2>/dev/null || guest_failed ""
note "restarts: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["restarts"], d.get("last_restart"))' "$T/mnt/.status")"
note "waits for the next server (ms): ${waits[*]}"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["restarts"])' "$T/mnt/.status")" -ge "$kills" ] ||
	fail "fewer restarts than kills"
$PROG status "$T/mnt" | grep -q "server restarts (the last: killed by signal 9" ||
	fail "status does not tell the restarts: $($PROG status "$T/mnt")"
# A handle opened under one server reads a whole snapshot under the next.
exec 7<"$T/mnt/.status"
srv=$(lm_server_pid "$T/mnt")
kill -9 "$srv"
until [ "$(lm_server_pid "$T/mnt")" != "$srv" ]; do sleep 0.01; done
python3 -c 'import json,os; json.load(os.fdopen(7))' ||
	fail ".status opened before a takeover reads no JSON after it"
exec 7<&-
# An upgrade in place: the binary now installed serves next, and the
# supervisor re-executes it too, keeping its pid and the connection.
old=$(lm_server_pid "$T/mnt")
cp "$PROG" "$T/bin.new"
mv "$T/bin.new" "$T/bin"
[[ $(readlink "/proc/$LM_PID/exe") == *"(deleted)" ]] ||
	fail "the test did not replace the supervisor's binary"
$PROG restart "$T/mnt" || fail "restart"
[ "$(lm_server_pid "$T/mnt")" != "$old" ] || fail "the server was not replaced"
grep -q "restarted on request" "$T/mnt/.status" || fail "restart cause: $(cat "$T/mnt/.status")"
[ "$(readlink "/proc/$LM_PID/exe")" = "$T/bin" ] ||
	fail "the supervisor runs $(readlink "/proc/$LM_PID/exe")"
grep -q "supervisor $LM_PID re-executed" "$T/lm.log" || fail "no re-exec logged"
sleep 1
kill -0 $gpid 2>/dev/null || guest_failed " after the restart"
# Let the guest finish cleanly: it syncs and writes the model.
kill $gpid
wait $gpid 2>/dev/null || true
$GM resolve "$T/mnt/disk.img" "$T/model" "$T/journal" ||
	fail "the image differs from the model after the takeovers"
lm_wait_complete "$T/mnt" 300
[ "$(lm_state "$T/mnt")" = verified ] || fail "state: $(lm_state "$T/mnt")"
$GM compare "$T/mnt/disk.img" "$T/model" || fail "image vs model"
lm_umount "$T/mnt"
$GM compare "$T/tgt.raw" "$T/model" || fail "target vs model"
grep -q "giving up" "$T/lm.log" && fail "the supervisor gave up"

# A server that dies at once, every time: given up, loudly.  The mount
# runs a copy of the binary, which a broken one then replaces (renamed
# over it, as an upgrade does), and the server is killed.
cp "$PROG" "$T/bin"
"$T/bin" mount -f --target "$T/tgt2.raw" --no-stream "$T/ds" vm/6 "$T/mnt" \
	>"$T/lm2.log" 2>&1 &
sup=$!
cleanup_fn "fusermount3 -u -z '$T/mnt'; kill -9 $sup"
for _ in $(seq 100); do [ -e "$T/mnt/.status" ] && break; sleep 0.1; done
printf '#!/bin/sh\nexit 9\n' >"$T/bin.new"
chmod +x "$T/bin.new"
mv "$T/bin.new" "$T/bin"
kill -9 "$(lm_server_pid "$T/mnt")"
for _ in $(seq 150); do kill -0 $sup 2>/dev/null || break; sleep 0.1; done
kill -0 $sup 2>/dev/null && fail "the supervisor did not give up"
wait $sup && fail "the supervisor gave up with exit 0"
grep -q "giving up on the mount" "$T/lm2.log" || fail "not said: $(cat "$T/lm2.log")"
[ "$(grep -c 'exited with status 9' "$T/lm2.log")" -ge 1 ] || fail "no cause"
dd if="$T/mnt/disk.img" of=/dev/null bs=4k count=1 2>/dev/null &&
	fail "the mount still serves after the supervisor gave up"
fusermount3 -u -z "$T/mnt" 2>/dev/null || true

# The supervisor killed: the connection aborts, as a crash did before.
# (Under the kernel's request timeout, which the supervisor tells.)
sysctl=/proc/sys/fs/fuse/default_request_timeout
if [ -w $sysctl ]; then
	cleanup_fn "echo $(cat $sysctl) >$sysctl"
	echo 40 >$sysctl
fi
lm_mount "$T/mnt" --target "$T/tgt2.raw" --no-stream "$T/ds" vm/6
if [ -w $sysctl ]; then
	echo 0 >$sysctl
	grep -q "aborts this mount if a request waits more than 40 s" "$T/lm.log" ||
		fail "the request timeout is not told"
fi
srv=$(lm_server_pid "$T/mnt")
kill -9 $LM_PID
for _ in $(seq 50); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
kill -0 "$srv" 2>/dev/null && fail "the server outlived its supervisor"
expect_fail $PROG status "$T/mnt"
assert_err_contains "has exited; run fusermount3 -u"
fusermount3 -u -z "$T/mnt"
echo ok
