#!/bin/bash
# The SigV4 signatures of pbs-livemount's S3 requests (signed by libcurl
# from the URL, query and headers the S3 store writes) equal botocore's
# for the same requests: GETs of files and chunks, listings with a
# continuation token that needs percent-encoding, PUTs with a body hash
# and If-None-Match, keys with ':' in them, a session token, another
# region.  radosgw checks signatures too but only says yes or no.
source "$(dirname "$0")/lib/functions.sh"
python3 -c 'import botocore' 2>/dev/null || skip "python3-botocore missing"
port=$(free_port)
python3 "$TESTS_DIR/lib/sigv4check.py" serve "$port" "$T/requests" &
cleanup_fn "kill $!"
for _ in $(seq 1 50); do
	curl -s -o /dev/null "http://127.0.0.1:$port/" && break
	sleep 0.1
done
: >"$T/requests"
export AWS_ACCESS_KEY_ID=AKIDEXAMPLE
export AWS_SECRET_ACCESS_KEY='wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
export AWS_SESSION_TOKEN='token/with+odd=chars'
S3=(--s3-endpoint "http://127.0.0.1:$port" --s3-region eu-west-3
	--remote-timeout 2)
make_image "$T/img" 4 3
$PROG restore "${S3[@]}" s3://my-bucket/store1 vm/100/2023-11-14T22:13:20Z \
	drive-scsi0 "$T/out" 2>/dev/null && fail "restore from nothing worked"
$PROG pack --lazy-chunk-dirs -q "${S3[@]}" --id 7 --ns a/b "$T/img:disk" s3://my-bucket/store1 ||
	fail "pack through the capture server"
$PROG list "${S3[@]}" s3://my-bucket/store1 vm/100 >/dev/null 2>&1 || true
$PROG list "${S3[@]}" s3://my-bucket/store1 >/dev/null 2>&1 || true
grep -q '"PUT"' "$T/requests" || fail "no PUT recorded"
grep -q 'continuation-token' "$T/requests" || fail "no second listing page"
grep -q 'if-none-match' "$T/requests" || fail "no conditional PUT"
grep -q 'x-amz-security-token' "$T/requests" || fail "no session token"
python3 "$TESTS_DIR/lib/sigv4check.py" check "$T/requests" AKIDEXAMPLE \
	"$AWS_SECRET_ACCESS_KEY" eu-west-3 || fail "a signature differs"
echo ok
