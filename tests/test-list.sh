#!/bin/bash
# list as PBS lists: a tree of namespaces (root, prod, prod/web), an
# encrypted snapshot shown with its key's fingerprint and no key given,
# a protected one, one the server verified, one with a comment; human
# sizes in text, and the same facts in --output-format json and
# json-pretty (checked with a JSON parser), from a datastore directory,
# over nginx HTTP and over the PBS protocol (the test double).
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
source "$TESTS_DIR/lib/pbs.sh"
export PBS_ENCRYPTION_PASSWORD=list-pass
truncate -s 3M "$T/d.raw"
printf 'data' | dd of="$T/d.raw" conv=notrunc status=none
printf 'memory: 512\n' >"$T/q.conf"
$PROG key create "$T/key.json" >"$T/fp"
pk() { $PROG pack --lazy-chunk-dirs -q --time 1700000000 "$@"; }
pk --id 100 "$T/d.raw:drive-scsi0" "$T/ds"
pk --id 101 --keyfile "$T/key.json" --config "$T/q.conf" "$T/d.raw:drive-scsi0" "$T/ds"
pk --id 200 --ns prod "$T/d.raw:drive-scsi0" "$T/ds"
pk --id 300 --ns prod/web "$T/d.raw:drive-scsi0" "$T/ds"
pk --id 301 --ns prod/web --type ct "$T/d.raw:drive-scsi0" "$T/ds"
pk --id 400 --ns test "$T/d.raw:drive-scsi0" "$T/ds"
touch "$T/ds/vm/100/2023-11-14T22:13:20Z/.protected"
python3 "$TESTS_DIR/lib/blobtool.py" manifest \
	"$T/ds/ns/prod/vm/200/2023-11-14T22:13:20Z/index.json.blob" \
	"m['unprotected']['verify_state'] = {'state': 'ok', 'upid': 'UPID:x'}; m['unprotected']['notes'] = 'web tier\nsecond line'"
nginx_start "$T/ds"
pbs_start "$T/ds"
export PBS_FINGERPRINT=$PBS_FP PBS_PASSWORD=$PBS_TOKEN_SECRET
fp=$(cat "$T/fp")

check() {	# check NAME REPO PROTECTED(1: the store can say)
	local name=$1 repo=$2 prot=$3
	$PROG list "$repo" >"$T/$name.txt" 2>"$T/$name.err" ||
		{ cat "$T/$name.err"; fail "$name: list"; }
	grep -q "^vm/100/2023-11-14T22:13:20Z  3.0 MiB" "$T/$name.txt" ||
		fail "$name: size in text: $(cat "$T/$name.txt")"
	grep -q "^vm/101/2023-11-14T22:13:20Z  3.0 MiB  key $fp" "$T/$name.txt" ||
		fail "$name: encrypted snapshot without a key: $(cat "$T/$name.txt")"
	grep -q "qemu-server.conf.blob .* B  encrypt" "$T/$name.txt" || fail "$name: blob line"
	grep -q "unreadable" "$T/$name.txt" && fail "$name: unreadable without a key"
	[ -s "$T/$name.err" ] && fail "$name: errors: $(cat "$T/$name.err")"
	grep -q "vm/200" "$T/$name.txt" && fail "$name: another namespace's group"
	if [ "$prot" = 1 ]; then
		grep -q "^vm/100/.* protected" "$T/$name.txt" || fail "$name: protected"
	fi
	$PROG list --ns prod "$repo" >"$T/$name-prod.txt" || fail "$name: list --ns"
	grep -q '^vm/200/2023-11-14T22:13:20Z  3.0 MiB  verify ok  "web tier"$' \
		"$T/$name-prod.txt" || fail "$name: verify state, comment: $(cat "$T/$name-prod.txt")"
	$PROG list --namespaces "$repo" >"$T/$name-ns.txt" || fail "$name: --namespaces"
	[ "$(cat "$T/$name-ns.txt" | tr '\n' ' ')" = "prod prod/web test " ] ||
		fail "$name: namespaces: $(cat "$T/$name-ns.txt")"
	[ "$($PROG list --namespaces --max-depth 1 "$repo" | tr '\n' ' ')" = "prod test " ] ||
		fail "$name: --max-depth 1"
	[ "$($PROG list --namespaces --ns prod "$repo" | tr '\n' ' ')" = "prod/web " ] ||
		fail "$name: namespaces under prod"
	$PROG list --output-format json "$repo" >"$T/$name.json" || fail "$name: json"
	$PROG list --output-format json-pretty --ns prod/web "$repo" >"$T/$name-web.json" ||
		fail "$name: json-pretty"
	$PROG list --output-format json --namespaces "$repo" >"$T/$name-ns.json" ||
		fail "$name: namespaces json"
	python3 - "$T/$name.json" "$T/$name-web.json" "$T/$name-ns.json" "$fp" "$prot" <<'PY' ||
import json, sys
snaps = json.load(open(sys.argv[1]))
by = {(s["backup-type"], s["backup-id"]): s for s in snaps}
assert set(by) == {("vm", "100"), ("vm", "101")}, by.keys()
s = by[("vm", "101")]
assert s["fingerprint"] == sys.argv[4] and s["backup-time"] == 1700000000
assert {f["filename"]: f["crypt-mode"] for f in s["files"]} == {
    "drive-scsi0.img.fidx": "encrypt", "qemu-server.conf.blob": "encrypt"}
assert s["size"] == sum(f["size"] for f in s["files"])
assert "fingerprint" not in by[("vm", "100")]
if sys.argv[5] == "1":
    assert by[("vm", "100")]["protected"] is True and s["protected"] is False
web = json.load(open(sys.argv[2]))
assert sorted((w["ns"], w["backup-type"], w["backup-id"]) for w in web) == [
    ("prod/web", "ct", "301"), ("prod/web", "vm", "300")], web
assert open(sys.argv[2]).read().count("\n") > 10  # pretty
assert json.load(open(sys.argv[3])) == [{"ns": "prod"}, {"ns": "prod/web"}, {"ns": "test"}]
PY
		fail "$name: JSON output"
	$PROG list --output-format json --ns prod "$repo" | python3 -c '
import json, sys
s = json.load(sys.stdin)[0]
assert s["verification"]["state"] == "ok" and s["comment"] == "web tier", s' ||
		fail "$name: verification and comment in JSON"
	note "$name: text and JSON as expected"
}

check dir "$T/ds" 1
check http "$NGX_URL" 1
check pbs "$PBS_TOKEN_ID@$PBS_HOST:store1" 0
# With the key, the encrypted snapshot is checked (and still listed).
$PROG list --keyfile "$T/key.json" "$T/ds" | grep -q "^vm/101/.*key $fp" || fail "list with the key"
$PROG list --output-format yaml "$T/ds" 2>"$T/err" && fail "a bad --output-format taken"
grep -q "output-format" "$T/err" || fail "no reason for a bad format"
echo ok
