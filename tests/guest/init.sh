#!/bin/busybox sh
# Guest init for the live-mount boot test: the root file system came
# through pbs-livemount; write a marker and real data, sync, report on
# the serial console, power off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -o remount,rw /
token=none
for w in $(cat /proc/cmdline); do
	case $w in lmtoken=*) token=${w#lmtoken=} ;; esac
done
if [ -b /dev/vdb ]; then
	t=$(head -c 64 /dev/vdb | tr -cd 'A-Za-z0-9_-')
	[ -n "$t" ] && token=$t
fi
echo "token=$token" >/marker.txt
date >>/marker.txt
# Several MiB written by the guest, derived from the token.
i=0
while [ $i -lt 128 ]; do
	echo "$token $i $(cat /proc/uptime)" | head -c 64 >>/marker.bin
	dd if=/dev/urandom bs=65536 count=1 2>/dev/null >>/marker.bin
	i=$((i + 1))
done
sync
echo "LIVEMOUNT-GUEST-OK token=$token" >/dev/ttyS0
sync
mount -o remount,ro /
echo o >/proc/sysrq-trigger
sleep 10
