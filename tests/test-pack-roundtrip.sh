#!/bin/bash
# pack -> restore -> cmp for awkward sizes and a 100 MiB mixed image;
# verify accepts the result; dedup and zero chunks behave as PBS's do.
source "$(dirname "$0")/lib/functions.sh"

ds=$T/ds
make_image "$T/one.img" B:1 1
make_image "$T/exact.img" B:4194304 2
make_image "$T/plus1.img" B:4194305 3
make_image "$T/mixed.img" 100 4

$PROG pack --id 100 --time 1700000000 "$T/one.img" "$T/exact.img" \
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
$PROG pack -q --id dup "$T/dup.img" "$T/ds2"
n=$(find "$T/ds2/.chunks" -type f | wc -l)
[ "$n" = 2 ] || fail "dedup: $n chunk files, want 2"
[ -f "$T/ds2/.chunks/bb9f/bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8" ] ||
	fail "zero chunk not at its PBS path"
$PROG restore -q "$T/ds2" vm/dup dup "$T/dup.out"
cmp "$T/dup.img" "$T/dup.out"
# A second pack into the same store reuses every chunk.
$PROG pack --id dup --time 1800000000 "$T/dup.img" "$T/ds2" 2>"$T/log"
grep -q "0 new" "$T/log" || fail "second pack wrote chunks again: $(cat "$T/log")"
# Packing over an existing snapshot is refused.
expect_fail $PROG pack --id dup --time 1800000000 "$T/dup.img" "$T/ds2"
assert_one_line_error
echo ok
