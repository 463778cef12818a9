#!/bin/bash
# Encrypted backups: key files, encrypted pack -> restore, an encrypted
# live mount with fio verify, and every way of getting it wrong: no key,
# wrong key, wrong passphrase, a flipped ciphertext byte with a fixed-up
# CRC, a changed IV and a tampered manifest each give one line and never
# plaintext garbage.
source "$(dirname "$0")/lib/functions.sh"
export PBS_ENCRYPTION_PASSWORD=correct-horse
$PROG key create "$T/key.json" >"$T/fp"
[ "$(stat -c %a "$T/key.json")" = 600 ] || fail "key file mode"
grep -Eq '^([0-9a-f]{2}:){31}[0-9a-f]{2}$' "$T/fp" || fail "fingerprint: $(cat "$T/fp")"
$PROG key show "$T/key.json" | grep -qx "fingerprint: $(cat "$T/fp")" ||
	fail "key show"
grep -q "$(cat "$T/fp")" "$T/key.json" || fail "fingerprint not stored"

make_image "$T/src.img" 24 51
$PROG pack --lazy-chunk-dirs -q --keyfile "$T/key.json" --id 42 --time 1700000000 \
	"$T/src.img:drive-scsi0" "$T/ds"
snap=vm/42/2023-11-14T22:13:20Z
# Chunks carry the encrypted magics; the manifest records the key.
for c in $(find "$T/ds/.chunks" -type f); do
	m=$(od -An -tx1 -N8 "$c" | tr -d ' \n')
	case $m in 7b6785be222d4cf0|e6591bbf0bbfd80b) ;;
	*) fail "chunk $c is not encrypted ($m)" ;; esac
done
$PROG list --keyfile "$T/key.json" "$T/ds" >"$T/list"
grep -q "key $(cat "$T/fp")" "$T/list" || fail "list lacks the key: $(cat "$T/list")"
grep -q "drive-scsi0.img.fidx .*encrypt" "$T/list" || fail "list crypt mode"

$PROG restore -q --keyfile "$T/key.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
cmp "$T/src.img" "$T/out" || fail "encrypted round trip differs"
$PROG verify -q --keyfile "$T/key.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
rm "$T/out"

no_out() { [ ! -e "$T/out" ] && [ ! -e "$T/out.partial" ] || fail "target left"; }

# No key.
expect_fail $PROG restore "$T/ds" vm/42 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "missing key"; no_out
# Another key.
$PROG key create "$T/other.json" >/dev/null
expect_fail $PROG restore --keyfile "$T/other.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "wrong key"; no_out
# Wrong passphrase.
PBS_ENCRYPTION_PASSWORD=not-the-one expect_fail $PROG restore \
	--keyfile "$T/key.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "wrong passphrase"; no_out
# Passphrase from a file works too.
echo correct-horse >"$T/pass"
PBS_ENCRYPTION_PASSWORD= $PROG restore -q --keyfile "$T/key.json" \
	--passphrase-file "$T/pass" "$T/ds" vm/42 drive-scsi0 "$T/out"
cmp "$T/src.img" "$T/out"; rm "$T/out"
# The key itself through a descriptor.
$PROG restore -q --keyfd 7 "$T/ds" vm/42 drive-scsi0 "$T/out" 7<"$T/key.json"
cmp "$T/src.img" "$T/out"; rm "$T/out"

# Tampered chunks: pick a chunk that is not the zero chunk.
digest=$(od -An -tx1 -j 4096 -N 32 "$T/ds/$snap/drive-scsi0.img.fidx" | tr -d ' \n')
chunk=$T/ds/.chunks/${digest:0:4}/$digest
cp "$chunk" "$T/chunk.orig"
python3 "$TESTS_DIR/lib/blobtool.py" flip-ct "$chunk"
expect_fail $PROG restore --keyfile "$T/key.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "$digest"; assert_err_contains "GCM tag"
no_out
cp "$T/chunk.orig" "$chunk"
python3 "$TESTS_DIR/lib/blobtool.py" flip-iv "$chunk"
expect_fail $PROG restore --keyfile "$T/key.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "GCM tag"; no_out
cp "$T/chunk.orig" "$chunk"

# A tampered manifest (a size changed, CRC fixed): the signature fails.
man=$T/ds/$snap/index.json.blob
cp "$man" "$T/man.orig"
python3 "$TESTS_DIR/lib/blobtool.py" manifest "$man" \
	'm["files"][0]["size"] += 4096'
expect_fail $PROG restore --keyfile "$T/key.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "signature"; no_out
# Stripping the signature does not help.
cp "$T/man.orig" "$man"
python3 "$TESTS_DIR/lib/blobtool.py" manifest "$man" 'm["signature"] = None'
expect_fail $PROG restore --keyfile "$T/key.json" "$T/ds" vm/42 drive-scsi0 "$T/out"
assert_one_line_error; assert_err_contains "signature"; no_out
cp "$T/man.orig" "$man"

# An encrypted live mount with fio verify.
requires_fuse
requires fio
lm_mount "$T/mnt" --keyfile "$T/key.json" --target "$T/tgt.raw" \
	--connections 2 "$T/ds" vm/42
cmp "$T/src.img" "$T/mnt/drive-scsi0.img" || fail "encrypted mount reads"
fio --name=enc --filename="$T/mnt/drive-scsi0.img" --rw=randrw --bs=4k \
	--size=16m --offset=4m --ioengine=psync --verify=crc32c \
	--verify_state_save=0 --verify_fatal=1 --fsync=16 --output="$T/fio.txt" ||
	{ cat "$T/fio.txt"; fail "fio verify on the encrypted mount"; }
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
fio --name=enc --filename="$T/tgt.raw" --rw=randrw --bs=4k --size=16m \
	--offset=4m --ioengine=psync --verify=crc32c --verify_fatal=1 \
	--verify_state_save=0 --verify_only --output="$T/fio2.txt" ||
	{ cat "$T/fio2.txt"; fail "fio --verify_only on the target"; }
cmp -n $((4 << 20)) "$T/src.img" "$T/tgt.raw" || fail "untouched head differs"
echo ok
