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
img=$("$TESTS_DIR/guest/build-image.sh" --cached 2>"$T/build.log") ||
	skip "cannot build the guest image: $(tail -1 "$T/build.log")"
accel=$(qemu_accel "$img")
note "guest image $img, accel $accel"
head -c $((32 << 20)) /dev/urandom >"$T/data.img"
$PROG pack --lazy-chunk-dirs -q --id 902 --time 1700000000 \
	"$img:drive-virtio0" "$T/data.img:drive-virtio1" "$T/ds"
snap=vm/902/2023-11-14T22:13:20Z
loop_secs=30
mnt=$T/mnt

# start_vm CACHE TOKEN DISK...: QEMU on the mount's disks (vda, vdc...)
# with the token disk as vdb; monitors $T/vm.qmp and $T/vm.mon.
start_vm() {
	local cache=$1 tok=$2 d drives=()
	shift 2
	printf '%s' "$tok" >"$T/token.raw"
	truncate -s 1M "$T/token.raw"
	drives=(-drive "file=$1,format=raw,if=virtio,cache=$cache,aio=threads"
		-drive "file=$T/token.raw,format=raw,if=virtio")
	shift
	for d in "$@"; do
		drives+=(-drive "file=$d,format=raw,if=virtio,cache=$cache,aio=threads")
	done
	: >"$T/console.log"
	rm -f "$T/vm.qmp" "$T/vm.mon"
	qemu-system-x86_64 -accel "$accel" -m 512 -nodefaults -display none \
		-no-reboot -serial "file:$T/console.log" \
		-qmp "unix:$T/vm.qmp,server=on,wait=off" \
		-qmp "unix:$T/vm.mon,server=on,wait=off" \
		"${drives[@]}" >"$T/qemu.log" 2>&1 &
	QEMU_PID=$!
	cleanup_fn "kill -9 $QEMU_PID"
}

heartbeats() { grep -c "^LM-HB n=" "$T/console.log" || true; }

wait_heartbeats() {	# N: at least N heartbeats, within the boot time
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(heartbeats)" -ge "$1" ] && return 0
		kill -0 $QEMU_PID 2>/dev/null || break
		sleep 0.5
	done
	tail -30 "$T/console.log"
	fail "no heartbeat from the guest"
}

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
	CUT_HB=$(heartbeats)
	note "$what: cut over after $CUT_HB heartbeats"
}

# The guest went on and finished: no error, no reboot, no long gap; the
# target holds every file the guest wrote, with its checksum.
check_guest() {
	local what=$1 tgt=$2 f
	for _ in $(seq $((loop_secs + 120))); do
		kill -0 $QEMU_PID 2>/dev/null || break
		sleep 1
	done
	kill -0 $QEMU_PID 2>/dev/null && fail "$what: the guest did not finish"
	wait $QEMU_PID 2>/dev/null || true
	grep -q "LIVEMOUNT-GUEST-OK" "$T/console.log" || fail "$what: no end line"
	# Up to the end line: what comes after the power-off is not the disk's.
	sed '/LIVEMOUNT-GUEST-OK/q' "$T/console.log" |
		grep -Eq "LM-HB-ERROR|I/O error|EXT4-fs error|Buffer I/O" &&
		{ grep -E "ERROR|error" "$T/console.log" | head; fail "$what: I/O error in the guest"; }
	python3 - "$T/console.log" "$CUT_HB" <<'PY' || fail "$what: heartbeats"
import re, sys
hb = [(int(m.group(1)), float(m.group(2))) for m in
      re.finditer(r"^LM-HB n=(\d+) t=([\d.]+)", open(sys.argv[1]).read(), re.M)]
cut = int(sys.argv[2])
assert [n for n, _ in hb] == list(range(len(hb))), "the counter restarted"
assert len(hb) >= cut + 5, f"only {len(hb) - cut} heartbeats after the cut-over"
gap = max(b - a for (_, a), (_, b) in zip(hb, hb[1:]))
print(f"# {len(hb)} heartbeats, {len(hb) - cut} after the cut-over, "
      f"longest gap {gap:.2f} s")
assert gap <= 2.0, f"a heartbeat gap of {gap:.2f} s"
PY
	dd if="$tgt" of="$T/part" bs=1M skip=1 status=none
	e2fsck -fn "$T/part" >"$T/fsck.log" 2>&1 ||
		{ cat "$T/fsck.log"; fail "$what: e2fsck of the target"; }
	debugfs -R 'cat /data/sums' "$T/part" 2>/dev/null >"$T/sums"
	[ -s "$T/sums" ] || fail "$what: no /data/sums in the target"
	while read -r sum f; do
		[ "$(debugfs -R "cat $f" "$T/part" 2>/dev/null | md5sum | cut -d' ' -f1)" = "$sum" ] ||
			fail "$what: $f in the target is not what the guest wrote"
	done <"$T/sums"
}

# 1. At completion, by the mount, two disks, cache=none.
nginx_start "$T/ds" --lua
data_chunk=$(od -An -tx1 -j $((4096 + 32 * 3)) -N 32 "$T/ds/$snap/drive-virtio1.img.fidx" | tr -d ' \n')
nginx_fault "hold $data_chunk"	# nobody reads the data disk's middle
lm_mount "$mnt" --target-dir "$T/tgt" --allow-other --cutover-qmp "$T/vm.qmp" \
	"$NGX_URL" $snap
start_vm none "loop${loop_secs}_$RANDOM" "$mnt/drive-virtio0.img" "$mnt/drive-virtio1.img"
wait_heartbeats 5
[ "$(lm_state "$mnt")" != complete ] || fail "completed before the loop ran"
nginx_fault off
after_cutover "at completion" "$T/tgt/drive-virtio0.raw" "$T/tgt/drive-virtio1.raw"
grep -q "cut over in" "$T/lm.log" || fail "the cut-over was not logged"
check_guest "at completion" "$T/tgt/drive-virtio0.raw"
cmp "$T/data.img" "$T/tgt/drive-virtio1.raw" || fail "the data disk's target differs"
nginx_stop

# 2. On command, one disk, cache=writeback.
lm_mount "$mnt" --target "$T/one.raw" --allow-other --archive drive-virtio0 "$T/ds" $snap
start_vm writeback "loop${loop_secs}_$RANDOM" "$mnt/drive-virtio0.img"
wait_heartbeats 5
lm_wait_complete "$mnt" 60
$PROG cutover --qmp "$T/vm.qmp" "$mnt" 2>"$T/cut.err" ||
	fail "cutover: $(cat "$T/cut.err")"
after_cutover "on command" "$T/one.raw"
check_guest "on command" "$T/one.raw"
echo ok
