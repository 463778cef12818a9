#!/bin/bash
# Sequential readahead: a guest reading an image in order finds the next
# chunks already local (filled into the target, or cached when there is
# no target); random reads fetch only what they touch.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires_fuse
head -c $((64 << 20)) /dev/urandom >"$T/a.img"	# 16 distinct chunks
$PROG pack --lazy-chunk-dirs -q --id 1 "$T/a.img:disk" "$T/ds"
nginx_start "$T/ds"

left() {
	python3 -c 'import json,sys
print(json.load(open(sys.argv[1]))["disks"][0]["chunks_left"])' "$T/mnt/.status"
}
fetched() {
	python3 -c 'import json,sys
print(json.load(open(sys.argv[1]))["disks"][0]["fetched"] >> 20)' "$T/mnt/.status"
}
# wait_fetched MIB: up to 10 s for at least MIB fetched.
wait_fetched() {
	for _ in $(seq 1 100); do
		[ "$(fetched)" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# Two sequential 1 MiB reads at the start: the next 8 chunks (32 MiB, the
# window under the default 256 MiB cache) are fetched into the cache.
lm_mount "$T/mnt" --target "$T/t.raw" --no-stream "$NGX_URL" vm/1
dd if="$T/mnt/disk.img" of=/dev/null bs=1M count=2 iflag=direct status=none
wait_fetched 36 || fail "sequential reads: $(fetched) MiB fetched, expected 36"
sleep 0.5
[ "$(fetched)" = 36 ] || fail "read ahead too far: $(fetched) MiB fetched"
# Only what the guest read is copied into the target (copy-on-read).
[ "$(left)" = 15 ] || fail "$(left) chunks left in the target, expected 15"
# Reading on to chunk 9 moves the window past the end; the data is right
# and the chunks the guest read are in the target.
cmp <(head -c $((40 << 20)) "$T/a.img") \
	<(dd if="$T/mnt/disk.img" bs=1M count=40 iflag=direct status=none) ||
	fail "sequential read through the mount"
wait_fetched 64 || fail "window did not move: $(fetched) MiB fetched"
[ "$(left)" = 6 ] || fail "$(left) chunks left in the target, expected 6"
lm_umount "$T/mnt"
cmp <(head -c $((40 << 20)) "$T/a.img") <(head -c $((40 << 20)) "$T/t.raw") ||
	fail "target after sequential reads"

# Random reads: each fetches its own chunk and nothing else.  The mounts
# from here on would prefetch the boot trace the first one recorded.
rm -f "$T/t.raw" "$T/t.raw.lmstate"
lm_mount "$T/mnt" --target "$T/t.raw" --no-stream --no-trace "$NGX_URL" vm/1
for blk in 10 3 14 7; do
	dd if="$T/mnt/disk.img" of=/dev/null bs=1M count=1 skip=$((blk * 4)) \
		iflag=direct status=none
done
sleep 1
[ "$(fetched)" = 16 ] || fail "random reads: $(fetched) MiB fetched, expected 16"
[ "$(left)" = 12 ] || fail "random reads: $(left) chunks left, expected 12"
lm_umount "$T/mnt"

# A small cache gets a small window: 16 MiB cache, 4 MiB (one chunk) ahead.
rm -f "$T/t.raw" "$T/t.raw.lmstate"
lm_mount "$T/mnt" --target "$T/t.raw" --no-stream --no-trace --cache-size 16M \
	"$NGX_URL" vm/1
dd if="$T/mnt/disk.img" of=/dev/null bs=1M count=2 iflag=direct status=none
wait_fetched 8 || fail "small cache: $(fetched) MiB fetched, expected 8"
sleep 0.5
[ "$(fetched)" = 8 ] || fail "small cache: read ahead $(fetched) MiB"
lm_umount "$T/mnt"

# Without a target the chunks ahead go to the cache: a sequential read of
# the whole image fetches each chunk once.
lm_mount "$T/mnt" --read-only --no-trace "$NGX_URL" vm/1
cmp "$T/a.img" "$T/mnt/disk.img" || fail "read-only sequential read"
[ "$(fetched)" -le 64 ] || fail "read-only: $(fetched) MiB fetched for 64"
lm_umount "$T/mnt"
echo ok
