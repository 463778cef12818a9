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
# "loopN_...": for N seconds, write, sync and read back files (caches
# dropped, so the reads reach the disk), one heartbeat line each round
# with the guest's own round counter and uptime; their checksums in
# /data/sums for the host to compare with the disk afterwards.
case $token in
loop[0-9]*)
	secs=${token#loop}
	secs=${secs%%_*}
	mkdir -p /data
	: >/data/sums
	n=0
	end=$(($(cut -d. -f1 /proc/uptime) + secs))
	while [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do
		f=/data/f$((n % 64))
		dd if=/dev/urandom of=$f bs=65536 count=4 conv=fsync 2>/dev/null
		want=$(md5sum $f | cut -d' ' -f1)
		sync
		echo 3 >/proc/sys/vm/drop_caches
		got=$(md5sum $f | cut -d' ' -f1)
		if [ "$got" != "$want" ]; then
			echo "LM-HB-ERROR n=$n $f read back wrong" >/dev/ttyS0
		fi
		grep -v " $f\$" /data/sums >/data/sums.new
		echo "$want  $f" >>/data/sums.new
		mv /data/sums.new /data/sums
		echo "LM-HB n=$n t=$(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS0
		n=$((n + 1))
	done
	sync
	;;
esac
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
