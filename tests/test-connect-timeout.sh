#!/bin/bash
# The first connection of an interactive command: a refused connection
# or a name that does not resolve is reported at once, then retried for
# --connect-timeout (default 10 s), not for the minute a mount that has
# reached its server waits.  Over HTTP, over the PBS API, and at the
# start of a mount.
source "$(dirname "$0")/lib/functions.sh"
port=$(free_port)	# nothing listens there
snap=vm/1/2023-11-14T22:13:20Z

# run SECS CMD...: CMD must fail within SECS; the warning must be in its
# stderr ($T/err) after 1.5 s, long before it gives up.
run() {
	local secs=$1 start pid
	shift
	start=$(date +%s%N)
	"$@" >/dev/null 2>"$T/err" &
	pid=$!
	sleep 1.5
	grep -q "cannot connect to" "$T/err" ||
		fail "nothing said after 1.5 s: $*: $(cat "$T/err")"
	wait $pid && fail "succeeded: $*"
	elapsed=$((($(date +%s%N) - start) / 1000000))
	note "$* failed after $elapsed ms"
	[ $elapsed -lt $((secs * 1000)) ] || fail "took $elapsed ms: $*"
	[ "$(grep -c . "$T/err")" -le 2 ] || fail "more than two lines: $(cat "$T/err")"
}

run 8 $PROG list --connect-timeout 4 "http://127.0.0.1:$port/ds"
grep -q "retrying for 4 s" "$T/err" || fail "the wait is not stated: $(cat "$T/err")"
assert_err_contains "gave up"
run 8 $PROG restore --connect-timeout 4 "http://pbslm-nosuch.invalid/ds" $snap disk "$T/out"
assert_err_contains "pbslm-nosuch.invalid"
[ ! -e "$T/out" ] && [ ! -e "$T/out.partial" ] || fail "restore left a file"
PBS_PASSWORD=secret run 8 $PROG list --connect-timeout 4 "root@pam@127.0.0.1:$port:store"
mkdir -p "$T/mnt"
run 8 $PROG mount -f --read-only --connect-timeout 4 "http://127.0.0.1:$port/ds" $snap "$T/mnt"
mountpoint -q "$T/mnt" && fail "mounted"
# The default is 10 s.
run 16 $PROG list "http://127.0.0.1:$port/ds"
grep -q "retrying for 10 s" "$T/err" || fail "default: $(cat "$T/err")"
[ $elapsed -ge 8000 ] || fail "the default gave up after $elapsed ms"
echo ok
