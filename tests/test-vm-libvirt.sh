#!/bin/bash
# The libvirt recipe (README, man page): a domain whose disk is a file on
# the live mount, mounted with --allow-other because libvirt runs QEMU
# as libvirt-qemu and gives it the file with chown, as it does with any
# disk file.  libvirtd runs here on a private socket; the guest boots,
# writes its marker, and after the stream completes the target verifies
# and holds the marker.  Then a persistent domain is cut over by the
# mount (--cutover-libvirt): the guest goes on without an error, QEMU
# holds the target, and the persistent definition names it.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/qemu.sh"
source "$TESTS_DIR/lib/libvirt.sh"
requires_fuse
requires debugfs
guest_image
$PROG pack --lazy-chunk-dirs -q --id 901 "$img:drive-virtio0" "$T/ds"
accel=$(qemu_accel "$img")
chmod 755 "$T"	# QEMU runs as libvirt-qemu: it must reach the files

libvirt_start

lm_mount "$T/mnt" --target "$T/tgt.raw" --verify --allow-other "$T/ds" vm/901
tok=lv$RANDOM
printf '%s' "$tok" >"$T/token.raw"
truncate -s 1M "$T/token.raw"
cat >"$T/dom.xml" <<XML
<domain type='$([ "$accel" = kvm ] && echo kvm || echo qemu)'>
  <name>pbslm-$$</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='threads'/>
      <source file='$T/mnt/drive-virtio0.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$T/token.raw'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='file'><source path='$T/console.log'/></serial>
  </devices>
</domain>
XML
virsh -c "$U" create "$T/dom.xml" >"$T/virsh.out" 2>&1 ||
	{ cat "$T/virsh.out" "$T/lv/libvirtd.log" | tail -20; fail "virsh create"; }
cleanup_fn "virsh -c '$U' destroy pbslm-$$"
ok=0
for _ in $(seq 1 400); do
	grep -q "LIVEMOUNT-GUEST-OK token=$tok" "$T/console.log" 2>/dev/null &&
		{ ok=1; break; }
	sleep 1
done
[ $ok = 1 ] || { tail -20 "$T/console.log"; fail "no console line under libvirt"; }
note "libvirt ($accel) booted the guest from the mount"
virsh -c "$U" destroy "pbslm-$$" >/dev/null 2>&1 || true
lm_wait_complete "$T/mnt" 300
[ "$(lm_state "$T/mnt")" = verified ] || fail "state: $(lm_state "$T/mnt")"
lm_umount "$T/mnt"
dd if="$T/tgt.raw" of="$T/part" bs=1M skip=1 status=none
debugfs -R 'cat /marker.txt' "$T/part" 2>/dev/null | grep -q "token=$tok" ||
	fail "the guest's marker is not in the target"

# Cut-over of a persistent domain, by the mount at completion: complete
# before the domain starts, the mount waits for QEMU, then moves it onto
# the target while the guest boots; the guest runs its write-and-verify
# loop to the end on the target.
dom=pbslm-cut-$$
lm_mount "$T/mnt" --target "$T/cut.raw" --allow-other --cutover-libvirt $dom \
	--libvirt-uri "$U" "$T/ds" vm/901
lm_wait_complete "$T/mnt" 120
sleep 1
grep -q '"cutover_waiting"' "$T/mnt/.status" ||
	fail "not waiting for the domain: $(cat "$T/mnt/.status")"
tok=loop20_$RANDOM
printf '%s' "$tok" >"$T/token.raw"
sed -e "s|<name>pbslm-$$</name>|<name>$dom</name>|" \
	-e "s|$T/console.log|$T/console2.log|" "$T/dom.xml" >"$T/dom2.xml"
virsh -c "$U" define "$T/dom2.xml" >/dev/null || fail "virsh define"
cleanup_fn "virsh -c '$U' destroy $dom; virsh -c '$U' undefine $dom"
virsh -c "$U" start $dom >/dev/null || fail "virsh start"
for _ in $(seq 60); do mountpoint -q "$T/mnt" || break; sleep 0.5; done
mountpoint -q "$T/mnt" && { tail "$T/lm.log"; fail "not cut over"; }
wait $LM_PID || fail "the daemon exited with $?"
grep -q "cut over in" "$T/lm.log" || fail "no cut-over in the log: $(tail -3 "$T/lm.log")"
pid=$(cat /run/libvirt/qemu/$dom.pid)
[ "$(python3 "$TESTS_DIR/lib/qmp.py" files "$pid" "$T/mnt" "$T/cut.raw")" = target ] ||
	fail "QEMU does not hold the target"
virsh -c "$U" dumpxml --inactive $dom >"$T/persistent.xml"
grep -q "source file='$T/cut.raw'" "$T/persistent.xml" ||
	fail "the persistent definition does not name the target"
ok=0
for _ in $(seq 300); do
	grep -q "LIVEMOUNT-GUEST-OK token=$tok" "$T/console2.log" 2>/dev/null &&
		{ ok=1; break; }
	sleep 1
done
[ $ok = 1 ] || { tail -20 "$T/console2.log"; fail "the guest did not finish"; }
# Up to its end line: what comes after the power-off is not the disk's.
sed '/LIVEMOUNT-GUEST-OK/q' "$T/console2.log" |
	grep -Eq "LM-HB-ERROR|I/O error|EXT4-fs error" &&
	fail "I/O error in the guest after the cut-over"
[ "$(grep -c '^LM-HB n=' "$T/console2.log")" -gt 10 ] || fail "the loop did not run"
echo ok
