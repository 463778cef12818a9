#!/bin/bash
# Boot traces: a mount records the order in which the guest first read
# chunks, per backup group and disk; the next mount of any snapshot of
# the group copies those chunks before the sequential stream (and a
# read-only mount warms its cache with them).  --prefetch-trace FILE
# imports and exports one; --no-trace does neither; a damaged trace is
# named and ignored.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires_fuse
requires python3

cs=4194304
ds=$T/ds
# Random data: every chunk is fetched (no zero chunks to skip).
head -c $((40 * cs)) /dev/urandom >"$T/a.img"
$PROG pack -q --lazy-chunk-dirs --id 7 --time 1700000000 "$T/a.img:disk" "$ds"
cp "$T/a.img" "$T/b.img"
printf 'second snapshot' | dd of="$T/b.img" bs=1 seek=$((3 * cs)) \
	conv=notrunc status=none
$PROG pack -q --lazy-chunk-dirs --id 7 --time 1700000100 "$T/b.img:disk" "$ds"
nginx_start "$ds"

# Present chunk? The target is sparse until a chunk is written to it.
has_data() {
	python3 - "$1" $(($2 * cs)) <<'PY'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
off = int(sys.argv[2])
try:
    d = os.lseek(fd, off, os.SEEK_DATA)
except OSError as e:
    sys.exit(1 if e.errno == errno.ENXIO else 2)
sys.exit(0 if d < off + 4194304 else 1)
PY
}

status_field() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
v=d
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1/.status" "$2"
}

# 1. The first mount records the guest's order: 37, 5, 20, 11 (and the
# re-read of 5 is not a new entry).
lm_mount "$T/m1" --no-stream --target "$T/t1.raw" "$NGX_URL" vm/7/2023-11-14T22:13:20Z
for c in 37 5 20 5 11; do
	dd if="$T/m1/disk.img" of=/dev/null bs=4096 count=1 skip=$((c * 1024 + 3)) \
		status=none
done
lm_umount "$T/m1"
trace=$(find "$T/traces" -name disk.trace)
[ "$(echo "$trace" | wc -l)" = 1 ] && [ -f "$trace" ] ||
	fail "no single boot trace under $T/traces: $(find "$T/traces")"
case $trace in
*/vm/7/disk.trace) ;;
*) fail "trace not at STORE/vm/7/disk.trace: $trace" ;;
esac
[ "$(head -2 "$trace" | tr '\n' '|')" = "pbs-livemount boot trace 1|chunk-size $cs|" ] ||
	fail "trace header: $(head -2 "$trace")"
[ "$(tail -n +3 "$trace" | tr '\n' ' ')" = "37 5 20 11 " ] ||
	fail "trace order: $(tail -n +3 "$trace" | tr '\n' ' ')"
grep -q "boot trace of 'disk.img' saved: 4 chunks" "$T/lm.log" ||
	fail "save not logged: $(cat "$T/lm.log")"

# 2. The next mount, of the other snapshot of the group, copies the
# traced chunks first: with the link limited to 8 MiB/s, when the four
# are done chunk 37 is in the target and chunk 30 is not.
: >"$T/lm.log"
lm_mount "$T/m2" --limit-rate 8M --target "$T/t2.raw" "$NGX_URL" vm/7/2023-11-14T22:15:00Z
grep -q "4 chunks of its boot trace '$trace' come first" "$T/lm.log" ||
	fail "trace not loaded: $(cat "$T/lm.log")"
[ "$(status_field "$T/m2" prefetch.chunks)" = 4 ] || fail "status prefetch.chunks"
for _ in $(seq 1 300); do
	[ "$(status_field "$T/m2" prefetch.done)" = 4 ] && break
	sleep 0.1
done
[ "$(status_field "$T/m2" prefetch.done)" = 4 ] || fail "prefetch not done"
for c in 37 5 20 11; do
	has_data "$T/t2.raw" $c || fail "traced chunk $c not copied first"
done
has_data "$T/t2.raw" 30 && fail "chunk 30 copied before the traced ones"
lm_wait_complete "$T/m2" 120
dd if="$T/m2/disk.img" of=/dev/null bs=4096 count=1 skip=$((8 * 1024)) \
	status=none
lm_umount "$T/m2"
cmp "$T/t2.raw" "$T/b.img" || fail "target differs after a prefetched stream"
# A session that read less than the trace it started with keeps it.
[ "$(tail -n +3 "$trace" | tr '\n' ' ')" = "37 5 20 11 " ] ||
	fail "a short session replaced the trace: $(tail -n +3 "$trace" | tr '\n' ' ')"

# 3. Read-only: the traced chunks are decoded into the cache at once,
# so the guest's reads of them hit it.
: >"$T/lm.log"
lm_mount "$T/m3" --read-only "$NGX_URL" vm/7/2023-11-14T22:13:20Z
for _ in $(seq 1 300); do
	[ "$(status_field "$T/m3" prefetch.done)" = 4 ] && break
	sleep 0.1
done
[ "$(status_field "$T/m3" prefetch.done)" = 4 ] || fail "read-only prefetch not done"
misses=$(status_field "$T/m3" cache.misses)
for c in 11 20 5 37; do
	dd if="$T/m3/disk.img" of=/dev/null bs=4096 count=1 skip=$((c * 1024)) \
		status=none
done
[ "$(status_field "$T/m3" cache.misses)" = "$misses" ] ||
	fail "read-only reads of traced chunks missed the cache"
lm_umount "$T/m3"

# 4. --prefetch-trace FILE: exported there (not to the default place),
# then imported from there.
: >"$T/lm.log"
rm -rf "$T/traces"
lm_mount "$T/m4" --no-stream --prefetch-trace "$T/my.trace" \
	--target "$T/t4.raw" "$NGX_URL" vm/7
for c in 2 9; do
	dd if="$T/m4/disk.img" of=/dev/null bs=4096 count=1 skip=$((c * 1024)) \
		status=none
done
lm_umount "$T/m4"
[ "$(tail -n +3 "$T/my.trace" | tr '\n' ' ')" = "2 9 " ] ||
	fail "--prefetch-trace export: $(cat "$T/my.trace")"
[ ! -e "$T/traces" ] || fail "--prefetch-trace also wrote the default trace"
lm_mount "$T/m5" --limit-rate 8M --prefetch-trace "$T/my.trace" \
	--target "$T/t5.raw" "$NGX_URL" vm/7
[ "$(status_field "$T/m5" prefetch.chunks)" = 2 ] || fail "--prefetch-trace import"
lm_umount "$T/m5"

# With --trace-time the trace is saved while still mounted, once the
# guest has run that long.
rm -f "$T/my.trace"
lm_mount "$T/m9" --no-stream --trace-time 1 --prefetch-trace "$T/my.trace" \
	--target "$T/t9.raw" "$NGX_URL" vm/7
dd if="$T/m9/disk.img" of=/dev/null bs=4096 count=1 skip=$((4 * 1024)) status=none
for _ in $(seq 1 50); do
	[ -f "$T/my.trace" ] && break
	sleep 0.1
done
[ "$(tail -n +3 "$T/my.trace" 2>/dev/null)" = 4 ] ||
	fail "trace not saved after --trace-time"
lm_umount "$T/m9"

# 5. A damaged trace is named, ignored, and replaced by a good one.
printf 'pbs-livemount boot trace 1\nchunk-size %s\n12\nbanana\n' $cs >"$T/bad.trace"
: >"$T/lm.log"
lm_mount "$T/m6" --no-stream --prefetch-trace "$T/bad.trace" \
	--target "$T/t6.raw" "$NGX_URL" vm/7
grep -q "trace: cannot use '$T/bad.trace': line 4 is not a boot trace line" "$T/lm.log" ||
	fail "damaged trace not named: $(cat "$T/lm.log")"
[ "$(status_field "$T/m6" prefetch.chunks)" = 0 ] || fail "damaged trace used"
dd if="$T/m6/disk.img" of=/dev/null bs=4096 count=1 skip=$((6 * 1024)) status=none
lm_umount "$T/m6"
[ "$(tail -n +3 "$T/bad.trace")" = 6 ] || fail "damaged trace not replaced"

# 6. --no-trace: nothing read, nothing written.
rm -rf "$T/traces"
lm_mount "$T/m7" --no-trace --no-stream --target "$T/t7.raw" "$NGX_URL" vm/7
dd if="$T/m7/disk.img" of=/dev/null bs=4096 count=1 status=none
lm_umount "$T/m7"
[ ! -e "$T/traces" ] || fail "--no-trace wrote a trace"
expect_fail $PROG mount --no-trace --prefetch-trace "$T/x" --read-only \
	"$NGX_URL" vm/7 "$T/m8"
assert_one_line_error
echo ok
