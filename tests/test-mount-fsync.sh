#!/bin/bash
# fsync on the image means stable storage: when it returns, the pages the
# daemon wrote into the target for the guest are no longer dirty in the
# target's page cache (cachestat(2)), in every state of the mount: on a
# --no-stream mount with the allocation unchanged (a rewrite), while
# streaming, and after completion (fdatasync too).  A rewrite is checked
# dirty before the fsync, so the test could see the loss it guards against.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
make_image "$T/src.img" 16 51
$PROG pack --lazy-chunk-dirs -q --id 4 "$T/src.img:disk" "$T/ds"
img=$T/mnt/disk.img
cs() { python3 "$TESTS_DIR/lib/cachestat.py" "$T/tgt.raw" "$1" 4096; }
python3 "$TESTS_DIR/lib/cachestat.py" "$T/src.img" 0 4096 >/dev/null ||
	{ [ $? = 77 ] && skip "no cachestat(2)"; fail "cachestat"; }

# rewrite OFF SYNC: write 4 KiB at OFF twice (the first makes the block
# present and the chunk guest-written), then SYNC (fsync|fdatasync); the
# target's page must be dirty before and clean after.
rewrite() {
	python3 - "$img" "$1" "$2" <<'PY'
import os, sys
img, off, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(img, os.O_RDWR)
os.pwrite(fd, os.urandom(4096), off)
os.fsync(fd)
os.pwrite(fd, os.urandom(4096), off)
PY
	local st
	st=$(cs "$1")
	note "after the rewrite at $1: $st"
	set -- "$1" "$2" $st
	[ "$6" -gt 0 ] || skip "the rewrite left no dirty page to observe ($*)"
	python3 -c 'import os,sys
fd = os.open(sys.argv[1], os.O_RDWR)
(os.fdatasync if sys.argv[2] == "fdatasync" else os.fsync)(fd)' "$img" "$2"
	st=$(cs "$1")
	note "after $2: $st"
	set -- "$1" "$2" $st
	[ "$6" = 0 ] && [ "$8" = 0 ] ||
		fail "$2 returned with the target page at $1 not durable: $st"
}

lm_mount "$T/mnt" --target "$T/tgt.raw" --no-stream "$T/ds" vm/4
rewrite $((1 << 20)) fsync
rewrite $((5 << 20 | 8192)) fdatasync
lm_umount "$T/mnt"

lm_mount "$T/mnt" --target "$T/tgt.raw" --limit-rate 4M "$T/ds" vm/4
rewrite $((9 << 20)) fsync
lm_wait_complete "$T/mnt" 60
rewrite $((2 << 20)) fdatasync
rewrite $((13 << 20 | 4096)) fsync
lm_umount "$T/mnt"
echo ok
