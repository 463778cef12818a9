#!/bin/bash
# Live cut-over under a running guest.  The small guest runs a
# write-and-verify loop on its disk (files written, synced, read back
# with caches dropped) with a heartbeat on the serial console, and is
# moved from the mount onto the targets with no restart:
#  1. by the mount itself at completion (--cutover-qmp), cache=none, two
#     disks, the completion held back by the store until the loop runs;
#  2. by the cutover command, cache=writeback, one disk.
# Each time: no I/O error in the guest, no reboot (its own counter goes
# on), no heartbeat gap over 2 s, QEMU's descriptors on the targets, the
# mount gone, the daemon exited 0, and the target holds what the guest
# wrote over the backup.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
source "$TESTS_DIR/lib/qemu.sh"
requires_fuse
requires debugfs
guest_image
accel=$(qemu_accel "$img")
note "guest image $img, accel $accel"
head -c $((32 << 20)) /dev/urandom >"$T/data.img"
$PROG pack --lazy-chunk-dirs -q --id 902 --time 1700000000 \
	"$img:drive-virtio0" "$T/data.img:drive-virtio1" "$T/ds"
snap=vm/902/2023-11-14T22:13:20Z
loop_secs=30
mnt=$T/mnt

# After the cut-over: QEMU on the targets, the mount and daemon gone.
after_cutover() {
	local what=$1 tgt
	shift
	for _ in $(seq 100); do mountpoint -q "$mnt" || break; sleep 0.1; done
	mountpoint -q "$mnt" && fail "$what: still mounted after the cut-over"
	for _ in $(seq 50); do kill -0 $LM_PID 2>/dev/null || break; sleep 0.1; done
	wait $LM_PID || fail "$what: the daemon exited with $?"
	for tgt in "$@"; do
		[ "$(qmp_files $QEMU_PID "$mnt" "$tgt")" = target ] ||
			fail "$what: QEMU holds $(qmp_files $QEMU_PID "$mnt" "$tgt") for $tgt"
	done
	CUT_HB=$(vm_heartbeats)
	note "$what: cut over after $CUT_HB heartbeats"
}

# The guest went on and finished, and the target holds its files.
check_guest() {
	vm_loop_check "$1" "$CUT_HB" "cut-over"
	vm_loop_target "$1" "$2"
}

# 1. At completion, by the mount, two disks, cache=none.
nginx_start "$T/ds" --lua
data_chunk=$(od -An -tx1 -j $((4096 + 32 * 3)) -N 32 "$T/ds/$snap/drive-virtio1.img.fidx" | tr -d ' \n')
nginx_fault "hold $data_chunk"	# nobody reads the data disk's middle
lm_mount "$mnt" --target-dir "$T/tgt" --allow-other --cutover-qmp "$T/vm.qmp" \
	"$NGX_URL" $snap
vm_start none "loop${loop_secs}_$RANDOM" "$mnt/drive-virtio0.img" "$mnt/drive-virtio1.img"
vm_wait_heartbeats 5
[ "$(lm_state "$mnt")" != complete ] || fail "completed before the loop ran"
nginx_fault off
after_cutover "at completion" "$T/tgt/drive-virtio0.raw" "$T/tgt/drive-virtio1.raw"
grep -q "cut over in" "$T/lm.log" || fail "the cut-over was not logged"
check_guest "at completion" "$T/tgt/drive-virtio0.raw"
cmp "$T/data.img" "$T/tgt/drive-virtio1.raw" || fail "the data disk's target differs"
nginx_stop

# 2. On command, one disk, cache=writeback.
lm_mount "$mnt" --target "$T/one.raw" --allow-other --archive drive-virtio0 "$T/ds" $snap
vm_start writeback "loop${loop_secs}_$RANDOM" "$mnt/drive-virtio0.img"
vm_wait_heartbeats 5
lm_wait_complete "$mnt" 60
$PROG cutover --qmp "$T/vm.qmp" "$mnt" 2>"$T/cut.err" ||
	fail "cutover: $(cat "$T/cut.err")"
after_cutover "on command" "$T/one.raw"
check_guest "on command" "$T/one.raw"
echo ok
