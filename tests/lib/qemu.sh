# Sourced after functions.sh: boot a guest disk with QEMU and wait for the
# guest's console line.  TCG always works; KVM is used only when a real
# boot probe succeeds (qemu_accel).
requires qemu-system-x86_64

# qemu_accel [IMAGE]: "kvm" or "tcg", decided once per test by booting a
# scratch copy of IMAGE (the guest image) under KVM: on some hosts
# /dev/kvm opens but guest entry fails ("KVM internal error").
qemu_accel() {
	local img=${1:-} a=tcg pid i
	if [ ! -f "$T/accel" ]; then
		if [ -w /dev/kvm ] && [ -n "$img" ]; then
			cp --sparse=always "$img" "$T/probe.img"
			printf probe >"$T/probe.tok"
			truncate -s 1M "$T/probe.tok"
			qemu-system-x86_64 -accel kvm -m 512 -nodefaults \
				-display none -no-reboot -serial "file:$T/probe.log" \
				-drive "file=$T/probe.img,format=raw,if=virtio" \
				-drive "file=$T/probe.tok,format=raw,if=virtio" \
				>"$T/probe.err" 2>&1 &
			pid=$!
			for ((i = 0; i < 60; i++)); do
				grep -q "LIVEMOUNT-GUEST-OK token=probe" \
					"$T/probe.log" 2>/dev/null && { a=kvm; break; }
				grep -qi "error" "$T/probe.err" && break
				kill -0 $pid 2>/dev/null || break
				sleep 1
			done
			kill -9 $pid 2>/dev/null || true
			wait $pid 2>/dev/null || true
			rm -f "$T/probe.img"
		fi
		echo $a >"$T/accel"
	fi
	cat "$T/accel"
}

# qemu_boot DISK CACHE TOKEN LOG TIMEOUT_S: boot DISK (raw, virtio) with a
# second small disk holding TOKEN; 0 only if "LIVEMOUNT-GUEST-OK
# token=TOKEN" appeared on the serial console and QEMU exited.
qemu_boot() {
	local disk=$1 cache=$2 token=$3 log=$4 secs=$5 pid i
	printf '%s' "$token" >"$T/token.raw"
	truncate -s 1M "$T/token.raw"
	: >"$log"
	qemu-system-x86_64 -accel "$(qemu_accel)" -m 512 -nodefaults \
		-display none -no-reboot -serial "file:$log" \
		-drive "file=$disk,format=raw,if=virtio,cache=$cache,aio=threads" \
		-drive "file=$T/token.raw,format=raw,if=virtio" \
		>"$log.qemu" 2>&1 &
	pid=$!
	cleanup_fn "kill -9 $pid"
	for ((i = 0; i < secs; i++)); do
		kill -0 $pid 2>/dev/null || break
		sleep 1
	done
	if kill -0 $pid 2>/dev/null; then
		kill -9 $pid
		wait $pid 2>/dev/null || true
		note "qemu timed out after $secs s"
		tail -20 "$log"
		return 1
	fi
	wait $pid 2>/dev/null || true
	grep -q "LIVEMOUNT-GUEST-OK token=$token" "$log"
}

# qemu_idle NAME DISK...: a QEMU (TCG, no guest to speak of: the BIOS
# finds nothing to boot) with each DISK as a virtio drive and two
# monitor sockets, $T/NAME.qmp for the program under test and
# $T/NAME.mon for the test itself; sets QEMU_PID.
qemu_idle() {
	local name=$1 d drives=() i
	shift
	for d in "$@"; do
		drives+=(-drive "file=$d,format=raw,if=virtio,cache=none,aio=threads")
	done
	rm -f "$T/$name.qmp" "$T/$name.mon"
	qemu-system-x86_64 -accel tcg -m 64 -nodefaults -display none \
		-qmp "unix:$T/$name.qmp,server=on,wait=off" \
		-qmp "unix:$T/$name.mon,server=on,wait=off" \
		"${drives[@]}" >"$T/$name.qemu.log" 2>&1 &
	QEMU_PID=$!
	cleanup_fn "kill -9 $QEMU_PID"
	for ((i = 0; i < 100; i++)); do
		[ -S "$T/$name.mon" ] && return 0
		sleep 0.05
	done
	cat "$T/$name.qemu.log"
	fail "QEMU did not start"
}

# qmp_call SOCKET CMD [JSON]: one monitor command, its return on stdout.
qmp_call() { python3 "$TESTS_DIR/lib/qmp.py" call "$@"; }
# qmp_disk SOCKET MOUNTPOINT: where the first disk is: mount or target.
qmp_disk() { python3 "$TESTS_DIR/lib/qmp.py" disk "$@"; }
# qmp_files PID MOUNTPOINT TARGET: mount, target, both or none.
qmp_files() { python3 "$TESTS_DIR/lib/qmp.py" files "$@"; }

# ---- a guest that runs a write-and-verify loop (tests/guest/init.sh) ----
# vm_start CACHE TOKEN DISK...: QEMU on DISK (vda, then vdc...) with the
# token disk as vdb (a token "loopN_x" runs the loop for N s, a
# heartbeat "LM-HB n=... t=..." each 0.2 s on the console); console
# $T/console.log, monitors $T/vm.qmp and $T/vm.mon; sets QEMU_PID.
vm_start() {
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
	qemu-system-x86_64 -accel "$(qemu_accel)" -m 512 -nodefaults \
		-display none -no-reboot -serial "file:$T/console.log" \
		-qmp "unix:$T/vm.qmp,server=on,wait=off" \
		-qmp "unix:$T/vm.mon,server=on,wait=off" \
		"${drives[@]}" >"$T/qemu.log" 2>&1 &
	QEMU_PID=$!
	cleanup_fn "kill -9 $QEMU_PID"
}

vm_heartbeats() { grep -c "^LM-HB n=" "$T/console.log" || true; }

# vm_wait_heartbeats N: at least N heartbeats, within the boot time.
vm_wait_heartbeats() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(vm_heartbeats)" -ge "$1" ] && return 0
		kill -0 $QEMU_PID 2>/dev/null || break
		sleep 0.5
	done
	tail -30 "$T/console.log"
	fail "no heartbeat from the guest"
}

# vm_loop_check WHAT HB EVENT: the guest went on after heartbeat HB (the
# EVENT) and finished: no I/O error, no reboot (its counter goes on), at
# least 5 heartbeats after, no gap over 2 s.  Waits for QEMU to exit.
vm_loop_check() {
	local what=$1 hb=$2 event=$3
	for _ in $(seq 300); do
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
	python3 - "$T/console.log" "$hb" "$event" <<'PY' || fail "$what: heartbeats"
import re, sys
hb = [(int(m.group(1)), float(m.group(2))) for m in
      re.finditer(r"^LM-HB n=(\d+) t=([\d.]+)", open(sys.argv[1]).read(), re.M)]
at, event = int(sys.argv[2]), sys.argv[3]
assert [n for n, _ in hb] == list(range(len(hb))), "the counter restarted"
assert len(hb) >= at + 5, f"only {len(hb) - at} heartbeats after the {event}"
gap = max(b - a for (_, a), (_, b) in zip(hb, hb[1:]))
print(f"# {len(hb)} heartbeats, {len(hb) - at} after the {event}, "
      f"longest gap {gap:.2f} s")
assert gap <= 2.0, f"a heartbeat gap of {gap:.2f} s"
PY
}

# vm_loop_target WHAT TARGET: the guest's file system in TARGET (from
# 1 MiB on) is clean and holds every file the loop wrote, as it wrote it.
vm_loop_target() {
	local what=$1 tgt=$2 sum f
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

# guest_image: the small guest's disk image (built once, cached) in $img,
# or skip the test, saying why it could not be built.
guest_image() {
	img=$("$TESTS_DIR/guest/build-image.sh" --cached 2>"$T/build.log") ||
		skip "cannot build the guest image: $(tail -1 "$T/build.log")"
}
