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
