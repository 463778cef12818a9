#!/bin/bash
# Key files are the only way into the backups made with them: create
# never replaces one unless --force, a terminal is asked for the
# passphrase twice and a mismatch writes nothing, and show prints what
# the file says of itself without asking for the passphrase.
source "$(dirname "$0")/lib/functions.sh"
onpty() { python3 "$TESTS_DIR/lib/onpty.py" "$@"; }
export PBS_ENCRYPTION_PASSWORD=first-pass
key=$T/key.json

$PROG key create "$key" >"$T/fp1"
cp "$key" "$T/key.orig"
# A second create, with or without another passphrase, is refused and
# changes nothing.
PBS_ENCRYPTION_PASSWORD=second-pass expect_fail $PROG key create "$key"
assert_one_line_error; assert_err_contains "exists"; assert_err_contains "--force"
cmp "$key" "$T/key.orig" || fail "the key file was changed"
# Not through a symlink or over a dangling one either.
ln -s "$T/elsewhere.json" "$T/link.json"
expect_fail $PROG key create "$T/link.json"
[ ! -e "$T/elsewhere.json" ] || fail "written through a dangling symlink"
[ -L "$T/link.json" ] || fail "the symlink was replaced"
# --force replaces it, atomically: the new key loads with its passphrase.
PBS_ENCRYPTION_PASSWORD=second-pass $PROG key create --force "$key" >"$T/fp2"
[ "$(cat "$T/fp1")" != "$(cat "$T/fp2")" ] || fail "--force kept the old key"
[ "$(stat -c %a "$key")" = 600 ] || fail "mode after --force"

# show: no passphrase needed, not even a terminal to ask on.
unset PBS_ENCRYPTION_PASSWORD
$PROG key show "$key" </dev/null >"$T/show"
grep -qx "fingerprint: $(cat "$T/fp2")" "$T/show" || fail "show: $(cat "$T/show")"
grep -qx "kdf: *scrypt" "$T/show" || fail "show kdf"
grep -Eq "^created: +20[0-9]{2}-" "$T/show" || fail "show created"
printf '{"kdf":null,"data":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}' \
	>"$T/plain.json"
$PROG key show "$T/plain.json" | grep -Eq '^fingerprint: ([0-9a-f]{2}:){31}' ||
	fail "show of a plain key"
printf '{"kdf":{"Argon":{}},"data":""}' >"$T/bad.json"
expect_fail $PROG key show "$T/bad.json"
assert_one_line_error; assert_err_contains "bad.json"; assert_err_contains "kdf"

# On a terminal the passphrase is asked twice; a mismatch writes nothing.
onpty --answer secret-one --answer secret-two -- \
	$PROG key create "$T/tty.json" >"$T/out" && fail "mismatch accepted"
grep -q "do not match" "$T/out" || fail "mismatch message: $(cat "$T/out")"
[ ! -e "$T/tty.json" ] || fail "a key was written after a mismatch"
onpty --answer secret-one --answer secret-one -- \
	$PROG key create "$T/tty.json" >"$T/out" || fail "create on a tty: $(cat "$T/out")"
[ "$(grep -c 'assword' "$T/out")" = 2 ] || fail "not asked twice: $(cat "$T/out")"
fp=$(grep -Eo '([0-9a-f]{2}:){31}[0-9a-f]{2}' "$T/out")
$PROG key show "$T/tty.json" | grep -qx "fingerprint: $fp" || fail "tty key"
# ...and it unlocks with the passphrase typed twice.
head -c 1M /dev/urandom >"$T/img"
PBS_ENCRYPTION_PASSWORD=secret-one $PROG pack -q --lazy-chunk-dirs --id 1 \
	--keyfile "$T/tty.json" "$T/img:disk" "$T/ds" || fail "the tty key"
echo ok
