#!/bin/bash
# Discard and write-zeroes at any alignment: after a punch or a zero
# range of [off, off+len) exactly that range reads as zeros, through the
# page cache and after dropping it, after kill -9 and a remount once
# fsync'ed, and the bytes around it are untouched.  QEMU's own
# write-zeroes (qemu-io, 512-byte requests on a 4 KiB block size, with
# and without unmap), fallocate(1) at odd offsets, and a random mix
# against a model, over absent blocks (--no-stream) and present ones.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
requires qemu-io
gm() { python3 "$TESTS_DIR/lib/guestmodel.py" "$@"; }
make_image "$T/src.img" 24 41
$PROG pack --lazy-chunk-dirs -q --id 3 "$T/src.img:disk" "$T/ds"
cp "$T/src.img" "$T/model"
img=$T/mnt/disk.img

# zero_model OFF LEN: the same change in the model.
zero_model() {
	dd if=/dev/zero of="$T/model" bs=1 seek="$1" count="$2" \
		conv=notrunc status=none
}

lm_mount "$T/mnt" --target "$T/tgt.raw" --no-stream "$T/ds" vm/3
# QEMU write-zeroes, 512-aligned, inside one 4 KiB block and across
# blocks and a chunk boundary; -u lets QEMU unmap (PUNCH_HOLE), without
# it QEMU asks for FALLOC_FL_ZERO_RANGE.
for spec in "1024 1024 -u" "5120 1024" "$((4194304 - 1536)) 3072 -u" \
	"$((6 << 20)) 512" "$((7 << 20 | 512)) 65536 -u"; do
	set -- $spec
	qemu-io -f raw -t writeback -c "write -z ${3:-} $1 $2" "$img" \
		>"$T/qio" || fail "qemu-io write -z $*: $(cat "$T/qio")"
	qemu-io -f raw -t none -c "read -P 0 $1 $2" "$img" >"$T/qio" ||
		fail "qemu-io read -P 0 after write -z $*: $(cat "$T/qio")"
	zero_model "$1" "$2"
done
gm compare "$img" "$T/model" || fail "after qemu-io write-zeroes"

# fallocate(1) at byte offsets: the tester's case, and more.
for spec in "-p 1000 10000" "-z 13 1" "-p 4095 2" "-z 8191 4097" \
	"-p $((12 << 20 | 77)) $((4 << 20))" "-z $((24 << 20)) 1"; do
	set -- $spec
	off=$2
	len=$3
	[ "$off" -ge $((24 << 20)) ] && len=0	# past the end: nothing
	fallocate -n "$1" -o "$2" -l "$3" "$img" || fail "fallocate $*"
	[ "$len" -gt 0 ] && zero_model "$off" "$len"
done
gm compare "$img" "$T/model" || fail "after fallocate"
python3 - "$img" <<'PY' || fail "punched range not zero"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
d = os.pread(fd, 10000, 1000)
n = sum(1 for b in d if b)
assert n == 0, f"{n} non-zero bytes in the punched 1000+10000"
PY
# Past the end without KEEP_SIZE would grow the image: refused.
if fallocate -z -o $((24 << 20)) -l 4096 "$img" 2>/dev/null; then
	fail "zero range that grows the image succeeded"
fi

# A random mix over absent and partly present blocks.
: >"$T/journal"
gm run "$img" "$T/model" "$T/journal" 5 7 PPZZWWRFS || fail "random mix"
gm compare "$img" "$T/model" || fail "after the random mix"

# Durable like a write once fsync'ed: kill -9, remount, compare.
zoff=$((3 << 20 | 333))
fallocate -n -p -o $zoff -l 50000 "$img"
zero_model $zoff 50000
python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDWR); os.fsync(fd)' "$img"
kill -9 $LM_PID
wait $LM_PID 2>/dev/null || true
fusermount3 -u -z "$T/mnt"
lm_mount "$T/mnt" --target "$T/tgt.raw" "$T/ds" vm/3
gm compare "$img" "$T/model" || fail "after kill -9 and a remount"

# Over present blocks: let the stream finish, then zero and punch again.
lm_wait_complete "$T/mnt" 60
: >"$T/journal"
gm run "$img" "$T/model" "$T/journal" 4 8 PPZZWRF || fail "mix, present"
gm compare "$img" "$T/model" || fail "after the mix over present blocks"
lm_umount "$T/mnt"
gm compare "$T/tgt.raw" "$T/model" || fail "target after unmount"
echo ok
