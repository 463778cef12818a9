# Sourced after functions.sh: a private libvirtd for one test, its
# sockets and log under $T, stopped by PID at the end; sets U (the URI).
# Skips the test when libvirt is not installed or does not start here.
requires libvirtd
requires virsh
requires virtlogd
id libvirt-qemu >/dev/null 2>&1 || skip "no libvirt-qemu user (libvirt-daemon-system)"

libvirt_start() {
	mkdir -p "$T/lv/sock"
	cat >"$T/lv/libvirtd.conf" <<CONF
unix_sock_dir = "$T/lv/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$T/lv/libvirtd.log"
CONF
	if [ ! -S /run/libvirt/virtlogd-sock ]; then
		virtlogd -d -p "$T/lv/virtlogd.pid"
		cleanup_fn "kill \$(cat '$T/lv/virtlogd.pid')"
	fi
	libvirtd -f "$T/lv/libvirtd.conf" -d -p "$T/lv/libvirtd.pid" 2>"$T/lv/err" ||
		skip "libvirtd does not start here: $(cat "$T/lv/err")"
	cleanup_fn "kill \$(cat '$T/lv/libvirtd.pid')"
	U="qemu:///system?socket=$T/lv/sock/libvirt-sock"
	for _ in $(seq 1 100); do virsh -c "$U" version >/dev/null 2>&1 && break; sleep 0.1; done
	virsh -c "$U" version >/dev/null 2>&1 || skip "libvirtd does not answer"
}

# libvirt_wait_console LOG TOKEN SECS: the guest's end line in LOG.
libvirt_wait_console() {
	local i
	for ((i = 0; i < $3; i++)); do
		grep -q "LIVEMOUNT-GUEST-OK token=$2" "$1" 2>/dev/null && return 0
		sleep 1
	done
	return 1
}
