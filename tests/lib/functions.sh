# Sourced by every end-to-end test (tests/test-*.sh).  Gives each test a
# private temporary directory, cleanup handlers run on exit, skip/fail
# helpers and small fixtures.  Tests are parallel-safe: nothing outside
# $T is touched and servers listen on ephemeral loopback ports.
set -eu
set -o pipefail

: "${PROG:?PROG must name the pbs-livemount binary}"
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/pbslm-test.XXXXXX")
_cleanups=()

cleanup_fn() { _cleanups+=("$*"); }

_run_cleanups() {
	local rc=$? i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[i]}" >/dev/null 2>&1 || true
	done
	rm -rf "$T"
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
