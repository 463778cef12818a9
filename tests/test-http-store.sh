#!/bin/bash
# Every command over a datastore served by a real nginx on loopback, HTTP
# and HTTPS: restore and verify are byte-identical; list works with JSON
# autoindex; certificate pinning, CA files and --insecure behave; the
# Authorization header reaches the server and never our logs.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires curl
make_image "$T/src.img" 40 61
$PROG pack --lazy-chunk-dirs -q --id 9 --time 1700000000 "$T/src.img:drive-scsi0" "$T/ds"

# Plain HTTP, with a bearer token the server insists on.
echo "Bearer s3cret-token" >"$T/auth"
nginx_start "$T/ds" --auth s3cret-token
url=$NGX_URL
$PROG restore -q --auth-file "$T/auth" "$url" vm/9 drive-scsi0 "$T/out"
cmp "$T/src.img" "$T/out" || fail "http restore differs"
rm "$T/out"
$PROG list --auth-file "$T/auth" "$url" >"$T/list"
grep -q "vm/9/2023-11-14T22:13:20Z" "$T/list" || fail "list: $(cat "$T/list")"
grep -q "drive-scsi0.img.fidx" "$T/list" || fail "list archives"
PBSLM_AUTH="Bearer s3cret-token" $PROG verify -q "$url" vm/9 drive-scsi0 "$T/src.img"
grep -q 's3cret-token' "$NGX_DIR/access.log" || fail "header did not reach nginx"
# The secret never shows in our output, even with the HTTP trace on.
$PROG restore --debug http,fetch --auth-file "$T/auth" "$url" vm/9 \
	drive-scsi0 "$T/out" 2>"$T/trace"
grep -q "Authorization: <redacted>" "$T/trace" || fail "no redacted header in trace"
grep -q 's3cret' "$T/trace" && fail "secret leaked into the log"
rm "$T/out"
# Without credentials: one line, at once, no target.
expect_fail $PROG restore "$url" vm/9 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "401"
[ ! -e "$T/out" ] || fail "target after 401"
kill $NGX_PID; wait $NGX_PID 2>/dev/null || true

# HTTPS with a self-signed certificate.
nginx_start "$T/ds" --tls
expect_fail $PROG restore "$NGX_URL" vm/9 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "fingerprint"
$PROG restore -q --fingerprint "$NGX_FP" "$NGX_URL" vm/9 drive-scsi0 "$T/out"
cmp "$T/src.img" "$T/out" || fail "https (pinned) restore differs"
rm "$T/out"
PBS_FINGERPRINT=$(echo "$NGX_FP" | tr a-f A-F) $PROG verify -q "$NGX_URL" vm/9 \
	drive-scsi0 "$T/src.img" || fail "PBS_FINGERPRINT, upper case"
wrong=$(echo "$NGX_FP" | sed 's/^../00/')
[ "$wrong" != "$NGX_FP" ] || wrong=$(echo "$NGX_FP" | sed 's/^../11/')
expect_fail $PROG restore --fingerprint "$wrong" "$NGX_URL" vm/9 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "$NGX_FP"; assert_err_contains "$wrong"
[ ! -e "$T/out" ] || fail "target after a refused certificate"
$PROG restore -q --ca-file "$NGX_CERT" "$NGX_URL" vm/9 drive-scsi0 "$T/out"
cmp "$T/src.img" "$T/out" || fail "https (--ca-file) restore differs"
rm "$T/out"
$PROG restore --insecure "$NGX_URL" vm/9 drive-scsi0 "$T/out" 2>"$T/err"
grep -q "insecure" "$T/err" || fail "--insecure gave no warning"
cmp "$T/src.img" "$T/out"
# nginx spoke HTTP/2 to us over TLS.
$PROG restore -q --debug http --fingerprint "$NGX_FP" "$NGX_URL" vm/9 \
	drive-scsi0 "$T/out2" 2>"$T/trace"
grep -qi "HTTP/2" "$T/trace" || fail "no HTTP/2"
echo ok
