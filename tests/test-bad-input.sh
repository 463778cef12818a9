#!/bin/bash
# Damaged backups and bad arguments: each gives one line naming the file
# and the offset or digest, a non-zero exit, and never a target that
# looks complete.
source "$(dirname "$0")/lib/functions.sh"

make_image "$T/img" 20 7
$PROG pack --lazy-chunk-dirs -q --id 1 --time 1700000000 "$T/img:disk" "$T/good"
snap=vm/1/2023-11-14T22:13:20Z
fidx=$snap/disk.img.fidx

fresh() { rm -rf "$T/ds" "$T/out" "$T/out.partial"; cp -a "$T/good" "$T/ds"; }
no_target() {
	[ ! -e "$T/out" ] || fail "target exists after a failed restore"
	[ ! -e "$T/out.partial" ] || fail "partial target left behind"
}
restore_fails() {
	expect_fail $PROG restore "$T/ds" $snap disk "$T/out"
	assert_one_line_error
	no_target
}
# A chunk of the image that is not the zero chunk, and its file.
digest=$(od -An -tx1 -j 4096 -N 32 "$T/good/$fidx" | tr -d ' \n')
chunk=$T/ds/.chunks/${digest:0:4}/$digest

fresh; truncate -s -1 "$T/ds/$fidx"; restore_fails
assert_err_contains "disk.img.fidx"; assert_err_contains "offset"

fresh; truncate -s +32 "$T/ds/$fidx"; restore_fails
assert_err_contains "disk.img.fidx"

fresh; printf 'XXXXXXXX' | dd of="$T/ds/$fidx" conv=notrunc status=none
restore_fails; assert_err_contains "magic"; assert_err_contains "offset 0"

# A changed digest in the index: the manifest's checksum catches it.
fresh; printf '\x01' | dd of="$T/ds/$fidx" bs=1 seek=4100 conv=notrunc status=none
restore_fails; assert_err_contains "checksum"

# Wrong CRC: flip a byte of the chunk's stored CRC.
fresh; printf '\xff\xff' | dd of="$chunk" bs=1 seek=8 conv=notrunc status=none
restore_fails; assert_err_contains "$digest"; assert_err_contains "CRC"

# Corrupted payload (CRC no longer matches).
fresh; printf 'garbage' | dd of="$chunk" bs=1 seek=100 conv=notrunc status=none
restore_fails; assert_err_contains "$digest"

# A valid blob of other data under this digest: digest mismatch.
fresh; other=$(find "$T/ds/.chunks" -type f ! -name "$digest" | head -1)
cp "$other" "$chunk"; restore_fails
assert_err_contains "$digest"; assert_err_contains "digest"

# Missing chunk, and an empty (evicted S3 cache) chunk file.
fresh; rm "$chunk"; restore_fails; assert_err_contains "missing"
fresh; : >"$chunk"; restore_fails; assert_err_contains "missing"

# Damaged manifest.
fresh; printf 'zz' | dd of="$T/ds/$snap/index.json.blob" bs=1 seek=20 \
	conv=notrunc status=none
restore_fails; assert_err_contains "index.json.blob"

# Archive names that try to leave the snapshot directory.
fresh
for bad in ../../x a/b ..; do
	expect_fail $PROG restore "$T/ds" $snap "$bad" "$T/out"
	assert_one_line_error; no_target
done
# Unknown archive, unknown snapshot, a .didx archive.
expect_fail $PROG restore "$T/ds" $snap nosuch "$T/out"
assert_one_line_error; assert_err_contains "nosuch"
expect_fail $PROG restore "$T/ds" vm/1/2020-01-01T00:00:00Z disk "$T/out"
assert_one_line_error
expect_fail $PROG restore "$T/ds" $snap root.pxar.didx "$T/out"
assert_one_line_error; assert_err_contains "not supported"

# A failed restore leaves an existing target untouched.
fresh; echo precious >"$T/out"; rm "$chunk"
expect_fail $PROG restore "$T/ds" $snap disk "$T/out"
[ "$(cat "$T/out")" = precious ] || fail "old target was overwritten"
echo ok
