# Sourced by every end-to-end test (tests/test-*.sh).  Gives each test a
# private temporary directory, cleanup handlers run on exit, skip/fail
# helpers and small fixtures.  Tests are parallel-safe: nothing outside
# $T is touched and servers listen on ephemeral loopback ports.
# KEEP_T=1 keeps $T after the test, for a post-mortem.
set -eu
set -o pipefail

: "${PROG:?PROG must name the pbs-livemount binary}"
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/pbslm-test.XXXXXX")
# Boot traces stay inside the test, not in /var/lib.
export PBSLM_TRACE_DIR=$T/traces
_cleanups=()

cleanup_fn() { _cleanups+=("$*"); }

_run_cleanups() {
	local rc=$? i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[i]}" >/dev/null 2>&1 || true
	done
	[ -n "${KEEP_T:-}" ] || rm -rf "$T"
	exit $rc
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "# $*"; }

requires() { command -v "$1" >/dev/null 2>&1 || skip "$1 not installed"; }
requires_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
requires_fuse() {
	[ -c /dev/fuse ] || skip "/dev/fuse missing"
	requires fusermount3
}

# A free TCP port on 127.0.0.1 (racy only against other programs).
free_port() {
	python3 - <<'PY' 2>/dev/null || shuf -i 20000-60000 -n 1
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

# expect_fail CMD...: CMD must exit non-zero; its stderr goes to $T/err.
expect_fail() {
	if "$@" 2>"$T/err"; then
		fail "expected failure: $*"
	fi
	cat "$T/err"
}

# assert_err_lines N: stderr of the last expect_fail has at most N lines.
assert_one_line_error() {
	local n
	n=$(grep -c . "$T/err" || true)
	[ "$n" -ge 1 ] || fail "no error message"
	[ "$n" -le 1 ] || fail "error is $n lines, want one: $(cat "$T/err")"
}

assert_err_contains() {
	grep -q -- "$1" "$T/err" || fail "error lacks '$1': $(cat "$T/err")"
}

# make_image FILE MIB [SEED]: a test image with random, text, zero and
# repeated regions; deterministic for a seed.
make_image() {
	local f=$1 mib=$2 seed=${3:-1}
	python3 "$TESTS_DIR/lib/mkimage.py" "$f" "$mib" "$seed"
}

# Peak-free sparse check: allocated bytes < apparent size.
is_sparse() {
	local f=$1 alloc size
	alloc=$(($(stat -c %b "$f") * $(stat -c %B "$f")))
	size=$(stat -c %s "$f")
	[ "$alloc" -lt "$size" ]
}

# ---- live mounts ----

# lm_mount MNT ARGS...: start `pbs-livemount mount -f ARGS... MNT` in the
# background, wait until MNT/.status exists; sets LM_PID; logs to $T/lm.log.
lm_mount() {
	local mnt=$1; shift
	mkdir -p "$mnt"
	"$PROG" mount -f "$@" "$mnt" >>"$T/lm.log" 2>&1 &
	LM_PID=$!
	cleanup_fn "fusermount3 -u -z '$mnt'; kill -9 $LM_PID"
	for _ in $(seq 1 100); do
		[ -e "$mnt/.status" ] && return 0
		kill -0 $LM_PID 2>/dev/null || { cat "$T/lm.log"; fail "mount exited"; }
		sleep 0.1
	done
	cat "$T/lm.log"
	fail "mount did not come up"
}

# lm_server_pid MNT: the PID of the process serving MNT now (LM_PID is its
# supervisor, the mount's first process).
lm_server_pid() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
		"$1/.status"
}

# lm_umount MNT: unmount and wait for the daemon to exit (state committed).
lm_umount() {
	local mnt=$1 rc=0
	fusermount3 -u "$mnt"
	wait $LM_PID || rc=$?
	[ $rc = 0 ] || { cat "$T/lm.log"; fail "daemon exited with $rc"; }
}

# lm_state MNT: the mount's state word from .status.
lm_state() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' \
		"$1/.status"
}

# lm_wait_complete MNT [SECS]
lm_wait_complete() {
	local mnt=$1 secs=${2:-120} i
	for ((i = 0; i < secs * 10; i++)); do
		case $(lm_state "$mnt") in
		complete | verified | verify-failed) return 0 ;;
		esac
		sleep 0.1
	done
	cat "$mnt/.status"
	fail "not complete after $secs s"
}
