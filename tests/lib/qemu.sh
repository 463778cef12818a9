# Sourced after functions.sh: boot a guest disk with QEMU and wait for the
# guest's console line.  TCG always works; KVM is used only when a real
# boot probe succeeds (on some hosts /dev/kvm opens but guest entry fails).
requires qemu-system-x86_64

# qemu_accel: "kvm" or "tcg" (cached in $T).
qemu_accel() {
	if [ ! -f "$T/accel" ]; then
		local a=tcg
		if [ -w /dev/kvm ] && timeout 20 qemu-system-x86_64 -accel kvm \
			-nodefaults -display none -no-reboot -m 64 \
			-kernel /dev/null >/dev/null 2>&1; then
			a=kvm
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
