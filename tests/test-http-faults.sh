#!/bin/bash
# Fault injection with nginx's Lua module: transient 503s, connections
# dropped mid-body, stalls past the request timeout, truncated bodies and
# flipped bytes are retried and the restore ends byte-identical; permanent
# faults fail within --remote-timeout with one line and no target; a 404
# is not retried.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
make_image "$T/src.img" 24 71
$PROG pack --lazy-chunk-dirs -q --id 4 --time 1700000000 "$T/src.img:disk" "$T/ds"
nginx_start "$T/ds" --lua
opts="--request-timeout 2 --remote-timeout 30 --connections 4"

for fault in "503 2" "drop 1" "stall 1 4" "trunc 1" "flip 2"; do
	nginx_fault "$fault"
	rm -f "$T/out"
	$PROG restore -q $opts "$NGX_URL" vm/4 disk "$T/out" ||
		fail "restore failed under transient '$fault'"
	cmp "$T/src.img" "$T/out" || fail "restore differs under '$fault'"
done
# The faults really happened: 503s and retries are in the log.
[ "$(nginx_count ' 503 ')" -gt 0 ] || fail "no 503 was served"

no_out() { [ ! -e "$T/out" ] && [ ! -e "$T/out.partial" ] || fail "target left"; }
rm -f "$T/out"
nginx_fault "503 0"
start=$(date +%s)
expect_fail $PROG restore --remote-timeout 3 "$NGX_URL" vm/4 disk "$T/out"
secs=$(($(date +%s) - start))
assert_one_line_error; assert_err_contains "503"; assert_err_contains "gave up"
[ $secs -le 10 ] || fail "took $secs s with --remote-timeout 3"
no_out

nginx_fault "flip 0"
expect_fail $PROG restore --remote-timeout 3 "$NGX_URL" vm/4 disk "$T/out"
assert_one_line_error; assert_err_contains "mismatch"; no_out

nginx_fault off
digest=$(od -An -tx1 -j 4096 -N 32 "$T/ds/vm/4/2023-11-14T22:13:20Z/disk.img.fidx" | tr -d ' \n')
mv "$T/ds/.chunks/${digest:0:4}/$digest" "$T/moved"
before=$(nginx_count "$digest")
expect_fail $PROG restore "$NGX_URL" vm/4 disk "$T/out"
assert_one_line_error; assert_err_contains "missing"; no_out
[ $(($(nginx_count "$digest") - before)) = 1 ] || fail "a 404 was retried"
echo ok
