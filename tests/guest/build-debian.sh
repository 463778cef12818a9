#!/bin/bash
# Build a Debian 12 guest as a user would restore one: mmdebstrap minbase
# with systemd, udev, openssh-server and Debian's kernel, on one ext4
# partition booted by extlinux.  Its service-ready mark: lm-ready.service
# waits until systemd has reached multi-user.target and sshd listens on
# port 22, prints "LIVEMOUNT-GUEST-OK token=T" on the serial console
# (T: the first bytes of /dev/vdb, as tests/guest/init.sh) and powers
# off.  Needs Debian's package mirror (mmdebstrap).
# Usage: build-debian.sh OUT.img [SIZE_MIB]
#        build-debian.sh --cached [DIR]   (prints the path)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mirror=${PBSLM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
. "$here/cache.sh"
if [ "${1:-}" = --cached ]; then
	guest_cached debian "$(cat "$0" "$here/cache.sh" | sha256sum |
		cut -c1-16)" "$0" "${2:-}"
	exit 0
fi
out=$1
size=${2:-1536}
command -v mmdebstrap >/dev/null || {
	echo "build-debian: mmdebstrap is not installed" >&2
	exit 1
}
work=$(mktemp -d)
mnt=$work/mnt
loop=
cleanup() {
	mountpoint -q "$mnt" && umount "$mnt"
	[ -n "$loop" ] && losetup -d "$loop"
	rm -rf "$work"
}
trap cleanup EXIT
root=$work/root
mkdir -p "$root"
mmdebstrap --quiet --variant=minbase \
	--include=systemd-sysv,udev,openssh-server,linux-image-amd64 \
	--customize-hook='echo lmguest >"$1/etc/hostname"' \
	bookworm "$root" "$mirror" >&2

cat >"$root/usr/local/sbin/lm-ready" <<'EOF'
#!/bin/sh
# Service ready: boot finished (multi-user.target reached) and sshd
# listening on port 22 (0016, state 0A in /proc/net/tcp*).
while :; do
	s=$(systemctl is-system-running 2>/dev/null)
	case $s in running|degraded)
		if grep -qs ':0016 [0-9A-F:]* 0A' /proc/net/tcp /proc/net/tcp6 &&
		   systemctl -q is-active multi-user.target; then
			break
		fi ;;
	esac
	sleep 0.1
done
token=none
[ -b /dev/vdb ] && token=$(head -c 64 /dev/vdb | tr -cd 'A-Za-z0-9_-')
echo "LIVEMOUNT-GUEST-OK token=$token state=$s" >/dev/ttyS0
systemctl --no-block poweroff
EOF
chmod 0755 "$root/usr/local/sbin/lm-ready"
cat >"$root/etc/systemd/system/lm-ready.service" <<'EOF'
[Unit]
Description=Report service-ready on the serial console
After=ssh.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/lm-ready

[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/lm-ready.service \
	"$root/etc/systemd/system/multi-user.target.wants/lm-ready.service"
echo '/dev/vda1 / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
kernel=$(cd "$root/boot" && ls vmlinuz-* | sort -V | tail -1)
mkdir -p "$root/boot/extlinux"
cat >"$root/boot/extlinux/extlinux.conf" <<CFG
DEFAULT debian
SERIAL 0 115200
TIMEOUT 1
PROMPT 0
LABEL debian
	LINUX /boot/$kernel
	INITRD /boot/initrd.img-${kernel#vmlinuz-}
	APPEND root=/dev/vda1 rw console=ttyS0 quiet panic=-1
CFG
guest_disk "$root" "$out" "$size" ^64bit,^metadata_csum,^huge_file
echo "build-debian: $out ($size MiB, $kernel)" >&2
