#!/bin/bash
# Every request is safe to answer twice.  A test fault
# (PBSLM_FAULT_KILL_AFTER=OP:N, first server only) kills the server once
# it has carried out a request and before it answers, so the kernel
# resends that request to the next server, which carries it out again:
# an unaligned write into blocks not yet local (a read-modify-write
# from the backup), an unaligned punch, an fsync.  The caller sees its
# call succeed, once, and the image equals the model; the stream then
# completes, --verify passes and the target is exact.  Owners and modes
# set through the mount (libvirt's chown) outlive the server too.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
make_image "$T/src.img" 24 41
$PROG pack --lazy-chunk-dirs -q --id 7 "$T/src.img:disk" "$T/ds"
cp "$T/src.img" "$T/model"

# once OP PYTHON: mount with the fault on OP, run PYTHON (img, model are
# open file objects; it does the same to both), check the takeover.
once() {
	local op=$1 code=$2 srv
	: >"$T/lm.log"
	PBSLM_FAULT_KILL_AFTER=$op:1 lm_mount "$T/mnt" --target "$T/tgt.raw" \
		--no-stream "$T/ds" vm/7
	srv=$(lm_server_pid "$T/mnt")
	python3 - "$T/mnt/disk.img" "$T/model" <<PY || fail "$op: the caller saw an error"
import os, sys
img = os.open(sys.argv[1], os.O_RDWR)
model = os.open(sys.argv[2], os.O_RDWR)
$code
os.close(img)
os.close(model)
PY
	grep -q "test fault: killed after request 1" "$T/lm.log" ||
		fail "$op: the fault did not fire: $(cat "$T/lm.log")"
	[ "$(lm_server_pid "$T/mnt")" != "$srv" ] || fail "$op: same server"
	cmp "$T/mnt/disk.img" "$T/model" || fail "$op: the image differs from the model"
	lm_umount "$T/mnt"
}

# A write of 3 blocks and a bit, at an odd offset, over data not local.
once write '
data = os.urandom(3 * 4096 + 1001)
assert os.pwrite(img, data, 5 * 4096 * 1024 + 777) == len(data)
os.pwrite(model, data, 5 * 4096 * 1024 + 777)'
# A punch from the middle of a block to the middle of another.
once fallocate '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
off, n = 9 * 1024 * 1024 + 1234, 3 * 4096 + 55
assert libc.fallocate(img, 3, off, n) == 0, ctypes.get_errno()
os.pwrite(model, bytes(n), off)'
# A write, then the fsync that makes it durable.
once fsync '
data = os.urandom(4096 * 7 + 3)
os.pwrite(img, data, 17 * 1024 * 1024 + 5)
os.pwrite(model, data, 17 * 1024 * 1024 + 5)
os.fsync(img)'

# Owners and modes: set through the mount, seen under the next server
# once the kernel forgets what it cached.
lm_mount "$T/mnt" --target "$T/tgt.raw" --verify "$T/ds" vm/7
chown 1234:5678 "$T/mnt/disk.img"
chmod 600 "$T/mnt/disk.img"
srv=$(lm_server_pid "$T/mnt")
kill -9 "$srv"
until [ "$(lm_server_pid "$T/mnt")" != "$srv" ]; do sleep 0.02; done
echo 2 >/proc/sys/vm/drop_caches
[ "$(stat -c %u:%g:%a "$T/mnt/disk.img")" = 1234:5678:600 ] ||
	fail "owner and mode after a takeover: $(stat -c %u:%g:%a "$T/mnt/disk.img")"
# And across a restart (a re-executed supervisor keeps them too).
$PROG restart "$T/mnt" || fail restart
echo 2 >/proc/sys/vm/drop_caches
[ "$(stat -c %u:%g:%a "$T/mnt/disk.img")" = 1234:5678:600 ] ||
	fail "owner and mode after a restart: $(stat -c %u:%g:%a "$T/mnt/disk.img")"
lm_wait_complete "$T/mnt" 120
[ "$(lm_state "$T/mnt")" = verified ] || fail "state: $(lm_state "$T/mnt")"
cmp "$T/mnt/disk.img" "$T/model" || fail "the image differs after the stream"
lm_umount "$T/mnt"
cmp "$T/tgt.raw" "$T/model" || fail "the target differs from the model"
echo ok
