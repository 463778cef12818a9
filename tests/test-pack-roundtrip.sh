#!/bin/bash
# pack -> restore -> cmp for awkward sizes and a 100 MiB mixed image;
# verify accepts the result; dedup and zero chunks behave as PBS's do.
source "$(dirname "$0")/lib/functions.sh"

ds=$T/ds
make_image "$T/one.img" B:1 1
make_image "$T/exact.img" B:4194304 2
make_image "$T/plus1.img" B:4194305 3
make_image "$T/mixed.img" 100 4

$PROG pack --lazy-chunk-dirs --id 100 --time 1700000000 "$T/one.img" "$T/exact.img" \
	"$T/plus1.img" "$T/mixed.img:drive-scsi0" "$ds"
snap=vm/100/2023-11-14T22:13:20Z
[ -f "$ds/$snap/index.json.blob" ] || fail "no manifest at $ds/$snap"
[ "$(cat "$ds/vm/100/owner")" = root@pam ] || fail "owner file"
ls "$ds/vm/100" | grep -q '^\.tmp' && fail "temporary directory left behind"

for a in one exact plus1 drive-scsi0; do
	src=$T/$a.img
	[ $a = drive-scsi0 ] && src=$T/mixed.img
	$PROG restore -q "$ds" $snap $a "$T/r-$a.img"
	cmp "$src" "$T/r-$a.img" || fail "restore of $a differs"
	$PROG verify -q "$ds" $snap $a.img.fidx "$T/r-$a.img" ||
		fail "verify of $a"
	[ ! -e "$T/r-$a.img.partial" ] || fail "partial file left"
done

# The newest snapshot is found by TYPE/ID; REPO as file:// works too.
$PROG restore -q "file://$ds" vm/100 plus1 "$T/newest.img"
cmp "$T/plus1.img" "$T/newest.img"

# Zero chunks are holes in a file target.
is_sparse "$T/r-drive-scsi0.img" || fail "zero regions were written out"

# Whole chunks go through O_DIRECT where the target takes it: a loop
# device with 4 KiB sectors (misaligned writes would fail there), and
# tmpfs, which refuses O_DIRECT and gets every byte buffered.
if command -v losetup >/dev/null; then
	truncate -s 104M "$T/blk"
	if loop=$(losetup -f --show --sector-size 4096 "$T/blk" 2>/dev/null)
	then
		cleanup_fn "losetup -d $loop"
		for a in plus1 drive-scsi0; do
			src=$T/$a.img
			[ $a = drive-scsi0 ] && src=$T/mixed.img
			# The second restore goes over the first one's data.
			$PROG restore -q --overwrite "$ds" $snap $a "$loop"
			cmp -n "$(stat -c %s "$src")" "$src" "$loop" ||
				fail "restore of $a to a 4 KiB-sector device"
		done
	fi
fi
mkdir "$T/tmpfs"
if mount -t tmpfs -o size=64m tmpfs "$T/tmpfs" 2>/dev/null; then
	cleanup_fn "umount -l '$T/tmpfs'"
	$PROG restore -q "$ds" $snap plus1 "$T/tmpfs/out"
	cmp "$T/plus1.img" "$T/tmpfs/out" || fail "restore to tmpfs differs"
fi

# verify names the first differing chunk.
printf 'X' | dd of="$T/r-drive-scsi0.img" bs=1 seek=$((9 * 4194304 + 7)) \
	conv=notrunc status=none
expect_fail $PROG verify "$ds" $snap drive-scsi0 "$T/r-drive-scsi0.img"
assert_one_line_error
assert_err_contains "chunk 9 (offset 37748736"

# Dedup: 4 copies of one chunk plus zero chunks store 2 chunk files.
head -c 4194304 /dev/urandom >"$T/c"
{ cat "$T/c" "$T/c"; head -c 8388608 /dev/zero; cat "$T/c" "$T/c"; } \
	>"$T/dup.img"
$PROG pack --lazy-chunk-dirs -q --id dup "$T/dup.img" "$T/ds2"
n=$(find "$T/ds2/.chunks" -type f | wc -l)
[ "$n" = 2 ] || fail "dedup: $n chunk files, want 2"
[ -f "$T/ds2/.chunks/bb9f/bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8" ] ||
	fail "zero chunk not at its PBS path"
$PROG restore -q "$T/ds2" vm/dup dup "$T/dup.out"
cmp "$T/dup.img" "$T/dup.out"
# A second pack into the same store reuses every chunk.
$PROG pack --lazy-chunk-dirs --id dup --time 1800000000 "$T/dup.img" "$T/ds2" 2>"$T/log"
grep -q "0 new" "$T/log" || fail "second pack wrote chunks again: $(cat "$T/log")"
# Packing over an existing snapshot is refused.
expect_fail $PROG pack --lazy-chunk-dirs --id dup --time 1800000000 "$T/dup.img" "$T/ds2"
assert_one_line_error

# Holes are not read: a sparse 2 GiB image with data at odd places
# (inside chunks, across a chunk edge, in the short last chunk) packs
# without reading its zeros and restores byte for byte, holes included.
truncate -s $((2 << 30 | 12345)) "$T/sparse.img"
for off in 0 4190000 $((1 << 30 | 777)) $((2 << 30))
do
	head -c 9000 /dev/urandom |
		dd of="$T/sparse.img" bs=1 seek=$off conv=notrunc status=none
done
$PROG pack --lazy-chunk-dirs --id sparse --time 1700000000 "$T/sparse.img" \
	"$T/ds3" 2>"$T/log"
grep -Eq "513 chunks, 5 new, .* 509 in holes" "$T/log" ||
	fail "holes were read or chunks miscounted: $(cat "$T/log")"
$PROG restore -q "$T/ds3" vm/sparse sparse "$T/sparse.out"
cmp "$T/sparse.img" "$T/sparse.out" || fail "sparse image restored wrong"
[ "$(du -k "$T/sparse.out" | cut -f1)" -lt 32768 ] ||
	fail "restored sparse image is not sparse"

# A new datastore as PBS's chunk store makes one, and files as PBS writes
# them: all 65,536 .chunks/XXXX directories, an empty .lock, directories
# 0755 and files 0644, a version-4 UUID in each index, the manifest as
# serde_json pretty-prints a sorted Value with chunk_upload_stats, key
# files compact.
export PBS_ENCRYPTION_PASSWORD=key-pass
$PROG key create "$T/key.json" >/dev/null
$PROG pack -q --id 7 --time 1700000000 --keyfile "$T/key.json" \
	"$T/exact.img:disk" "$T/pbs"
[ "$(find "$T/pbs/.chunks" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 65536 ] ||
	fail "not all 65,536 chunk directories"
[ -f "$T/pbs/.lock" ] && [ ! -s "$T/pbs/.lock" ] || fail "no empty .lock"
bad=$(find "$T/pbs" \( -type d ! -perm 0755 \) -o \( -type f ! -perm 0644 \) |
	head -3)
[ -z "$bad" ] || fail "modes: $bad"
python3 - "$T/pbs/vm/7/2023-11-14T22:13:20Z" "$T/key.json" <<'PY' ||
import json, os, subprocess, sys
d, key = sys.argv[1], sys.argv[2]
fidx = open(os.path.join(d, "disk.img.fidx"), "rb").read()
assert fidx[14] >> 4 == 4 and fidx[16] & 0xC0 == 0x80, "uuid not version 4"
blob = open(os.path.join(d, "index.json.blob"), "rb").read()
body = blob[12:]
if blob[:8] == bytes([49, 185, 88, 66, 111, 182, 163, 127]):
    body = subprocess.run(["zstd", "-dc"], input=body, check=True,
                          capture_output=True).stdout
text = body.decode()
want = json.dumps(json.loads(text), indent=2, sort_keys=True,
                  separators=(",", ": "), ensure_ascii=False)
assert text == want, f"manifest not serde_json's form:\n{text}"
m = json.loads(text)
st = m["unprotected"]["chunk_upload_stats"]
assert sorted(st) == ["compressed_size", "count", "duplicates", "size"], st
assert st["count"] == 1 and st["size"] == 4194304 and st["duplicates"] == 0, st
assert m["unprotected"]["key-fingerprint"], m
k = open(key).read()
assert k == json.dumps(json.loads(k), separators=(",", ":")), "key not compact"
PY
	fail "files not as PBS writes them"
echo ok
