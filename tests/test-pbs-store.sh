#!/bin/bash
# A PBS repository (the PBS double, tests/lib/pbs-server.js): list,
# restore and verify over the API and the reader protocol with an API
# token and with a password (ticket), plain and encrypted, in a
# namespace, through PBS_REPOSITORY; every refusal (wrong token,
# password or pin, untrusted certificate, unknown datastore, namespace
# or snapshot, no privileges, no secret, ambiguous REPO) is one line,
# exits 1 and writes nothing; secrets never show in argv, the environment
# of the process, or the output of --debug all.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/pbs.sh"
make_image "$T/plain.img" 24 11
make_image "$T/secret.img" 20 12
make_image "$T/ns.img" 9 13
PBS_ENCRYPTION_PASSWORD=key-pass $PROG key create "$T/key.json" >/dev/null
$PROG pack --lazy-chunk-dirs -q --id 100 "$T/plain.img:drive-scsi0" "$T/ds"
PBS_ENCRYPTION_PASSWORD=key-pass $PROG pack --lazy-chunk-dirs -q --id 101 --keyfile "$T/key.json" \
	"$T/secret.img:drive-scsi0" "$T/ds"
$PROG pack --lazy-chunk-dirs -q --id 102 --ns site/a "$T/ns.img:drive-scsi0" "$T/ds"
# The default token and user of pbs_start may read; "nope" may not.
PBS_EXTRA_AUTH='token root@pam!nope nope-secret'
pbs_start "$T/ds" \
	--acl 'root@pam!livemount=*' --acl 'alice@pbs=store1'
export PBS_FINGERPRINT=$PBS_FP
repo="$PBS_TOKEN_ID@$PBS_HOST:store1"
urepo="$PBS_USER@$PBS_HOST:store1"
tok() { PBS_PASSWORD=$PBS_TOKEN_SECRET "$@"; }
TOK=(env "PBS_PASSWORD=$PBS_TOKEN_SECRET")
usr() { PBS_PASSWORD=$PBS_USER_PASSWORD "$@"; }
key_env() { PBS_ENCRYPTION_PASSWORD=key-pass "$@"; }

# ---- what works ----
tok $PROG list "$repo" >"$T/list" || fail "list with a token"
grep -q "vm/100/" "$T/list" && grep -q "vm/101/" "$T/list" ||
	fail "list: $(cat "$T/list")"
grep -q "vm/102" "$T/list" && fail "list shows another namespace's group"
tok $PROG list --ns site/a "$repo" | grep -q "vm/102/" || fail "list --ns"
tok $PROG restore "$repo" vm/100 drive-scsi0 "$T/r1.img" || fail "restore (token)"
cmp "$T/plain.img" "$T/r1.img" || fail "restore (token) differs"
tok $PROG verify -q "$repo" vm/100 drive-scsi0 "$T/r1.img" || fail "verify"
usr $PROG restore "$urepo" vm/100 drive-scsi0 "$T/r2.img" || fail "restore (password)"
cmp "$T/plain.img" "$T/r2.img" || fail "restore (password) differs"
key_env tok $PROG restore --keyfile "$T/key.json" "$repo" vm/101 drive-scsi0 \
	"$T/r3.img" || fail "restore (encrypted)"
cmp "$T/secret.img" "$T/r3.img" || fail "restore (encrypted) differs"
tok $PROG restore --ns site/a "$repo" vm/102 drive-scsi0 "$T/r4.img" ||
	fail "restore from a namespace"
cmp "$T/ns.img" "$T/r4.img" || fail "restore from a namespace differs"
PBS_REPOSITORY=$repo tok $PROG restore vm/100 drive-scsi0 "$T/r5.img" ||
	fail "restore with PBS_REPOSITORY"
cmp "$T/plain.img" "$T/r5.img" || fail "restore with PBS_REPOSITORY differs"
echo "$PBS_TOKEN_SECRET" >"$T/secret"
chmod 600 "$T/secret"
env -u PBS_PASSWORD $PROG restore --password-file "$T/secret" "$repo" vm/100 \
	drive-scsi0 "$T/r6.img" || fail "restore with --password-file"
env -u PBS_PASSWORD $PROG restore --password-fd 3 "$repo" vm/100 \
	drive-scsi0 "$T/r7.img" 3<"$T/secret" || fail "restore with --password-fd"
cmp "$T/plain.img" "$T/r7.img" || fail "restore with --password-fd differs"
[ "$(pbs_count 'chunk.* 401')" = 0 ] || fail "a /chunk request was refused"

# ---- what is refused, in one line, writing nothing ----
refused() {
	local what=$1 needle=$2
	shift 2
	rm -f "$T/target.img"
	expect_fail timeout 60 "$@" >/dev/null
	assert_one_line_error
	assert_err_contains "$needle"
	[ -e "$T/target.img" ] && fail "$what: a target was written"
	note "$what: $(cat "$T/err")"
}
R=(restore "$repo" vm/100 drive-scsi0 "$T/target.img")
refused "wrong token" "401" env PBS_PASSWORD=wrong $PROG "${R[@]}"
refused "wrong password" "cannot log in" env PBS_PASSWORD=wrong $PROG \
	restore "$urepo" vm/100 drive-scsi0 "$T/target.img"
refused "wrong pin" "is not the pinned" "${TOK[@]}" \
	PBS_FINGERPRINT=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff \
	$PROG "${R[@]}"
refused "no pin" "cannot trust" env -u PBS_FINGERPRINT \
	"PBS_PASSWORD=$PBS_TOKEN_SECRET" $PROG "${R[@]}"
refused "unknown datastore" "no such datastore" "${TOK[@]}" $PROG restore \
	"$PBS_TOKEN_ID@$PBS_HOST:nostore" vm/100 drive-scsi0 "$T/target.img"
refused "unknown namespace" "does not exist" "${TOK[@]}" $PROG restore --ns no/where \
	"$repo" vm/100 drive-scsi0 "$T/target.img"
refused "unknown snapshot" "does not exist" "${TOK[@]}" $PROG restore "$repo" \
	vm/100/2001-01-01T00:00:00Z drive-scsi0 "$T/target.img"
refused "unknown group" "vm/999" "${TOK[@]}" $PROG restore "$repo" vm/999 drive-scsi0 \
	"$T/target.img"
refused "no privileges" "permission" env PBS_PASSWORD=nope-secret $PROG restore \
	"root@pam!nope@$PBS_HOST:store1" vm/100 drive-scsi0 "$T/target.img"
refused "no secret" "no token secret" env -u PBS_PASSWORD $PROG "${R[@]}"
mkdir -p "$T/cwd/localhost:store1"
(cd "$T/cwd" && refused "ambiguous" "both a directory" "${TOK[@]}" $PROG restore \
	localhost:store1 vm/100 drive-scsi0 "$T/target.img")
(cd "$T/cwd" && refused "bare name" "localhost:nosuchdir" $PROG restore \
	nosuchdir vm/100 drive-scsi0 "$T/target.img")
refused "bad repository" "bad port" "${TOK[@]}" $PROG restore \
	"$PBS_TOKEN_ID@127.0.0.1:99999999:store1" vm/100 drive-scsi0 "$T/target.img"

# ---- secrets stay secret ----
tok $PROG restore --debug all "$repo" vm/100 drive-scsi0 "$T/r8.img" \
	>"$T/debug.log" 2>&1 || fail "restore --debug all"
usr $PROG restore --debug all "$urepo" vm/100 drive-scsi0 "$T/r9.img" \
	>>"$T/debug.log" 2>&1 || fail "restore --debug all (password)"
grep -q "PBSAPIToken\|Authorization: <redacted>\|Cookie: <redacted>" \
	"$T/debug.log" || note "(no credential header in the trace)"
for s in "$PBS_TOKEN_SECRET" "$PBS_USER_PASSWORD"; do
	grep -qF -- "$s" "$T/debug.log" && fail "a secret in the --debug output"
done
# A process that has the secret: not in its argv, nor its environment.
mkdir -p "$T/mnt"
PBS_PASSWORD=$PBS_TOKEN_SECRET $PROG mount -f --read-only "$repo" vm/100 \
	"$T/mnt" >"$T/lm.log" 2>&1 &
pid=$!
cleanup_fn "fusermount3 -u -z '$T/mnt'; kill -9 $pid"
for _ in $(seq 1 100); do [ -e "$T/mnt/.status" ] && break; sleep 0.1; done
[ -e "$T/mnt/.status" ] || { cat "$T/lm.log"; fail "read-only mount"; }
cmp "$T/plain.img" "$T/mnt/drive-scsi0.img" || fail "read-only mount differs"
for f in cmdline environ; do
	tr '\0' '\n' <"/proc/$pid/$f" | grep -qF -- "$PBS_TOKEN_SECRET" &&
		fail "the secret in /proc/PID/$f"
done
ps -ef | grep -F -- "$PBS_TOKEN_SECRET" | grep -v grep && fail "secret in ps"
grep -qF -- "$PBS_TOKEN_SECRET" "$T/mnt/.status" && fail "secret in .status"
fusermount3 -u "$T/mnt"
wait $pid || fail "read-only mount exit status"
grep -qF -- "$PBS_TOKEN_SECRET" "$T/lm.log" && fail "secret in the log"
echo ok
