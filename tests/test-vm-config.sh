#!/bin/bash
# The VM's own configuration: a backup packed with qemu-server.conf as
# vzdump writes it (its disk maps, a description, a CD-ROM, a card on a
# bridge, a host device) shows it read-only in the mount and restores it
# by name; an encrypted one is decrypted with the key, refused without
# it, and a tampered blob is refused.  Then the guest boots from the
# QEMU line and from the libvirt domain that vm-config makes of it, both
# disks (system and token) on the mount, and the QEMU line's monitor
# (--cutover-qmp) answers.  A q35 machine with IDE and SATA disks starts
# from both too (each disk on its own port).
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/qemu.sh"
requires_fuse
guest_image
accel=$(qemu_accel "$img")
chmod 755 "$T"	# libvirt's QEMU runs as libvirt-qemu

tok=vc$RANDOM
printf '%s' "$tok" >"$T/token.raw"
truncate -s 1M "$T/token.raw"
size=$(stat -c %s "$img")
# As vzdump writes it: sections gone, maps added, '%3A' for ':'.
cat >"$T/qemu-server.conf" <<EOF2
#Restored web server%3A keep the MAC
#second line
boot: order=virtio0;ide2;net0
cores: 1
ide2: none,media=cdrom
memory: 512
meta: creation-qemu=8.1.5,ctime=1700000000
name: lm-web
net0: virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,tag=20
hostpci0: 0000:01:00.0,pcie=0
ostype: l26
scsihw: virtio-scsi-single
smbios1: uuid=6f2c2c9e-93a5-4b8e-9d7c-4c2f6f1d0a11
sockets: 1
virtio0: local:901/vm-901-disk-0.raw,iothread=1,size=${size}
virtio1: local:901/vm-901-disk-1.raw,size=1M
vmgenid: 3c9e3a4e-0a6f-4e5a-8d42-6a7d1e9b0c55
#qmdump#map:virtio0:drive-virtio0:local:raw:
#qmdump#map:virtio1:drive-virtio1:local:raw:
EOF2
$PROG pack --lazy-chunk-dirs -q --id 901 --config "$T/qemu-server.conf" \
	"$img:drive-virtio0" "$T/token.raw:drive-virtio1" "$T/ds"

# Restore by name, to a file and to stdout; never over data.
$PROG restore -q "$T/ds" vm/901 qemu-server.conf "$T/r.conf" || fail "restore of the blob"
cmp "$T/r.conf" "$T/qemu-server.conf" || fail "restored configuration differs"
[ "$($PROG restore -q "$T/ds" vm/901 qemu-server.conf.blob - | md5sum)" = \
  "$(md5sum <"$T/qemu-server.conf")" ] || fail "restore to stdout differs"
$PROG restore -q "$T/ds" vm/901 qemu-server.conf "$T/r.conf" 2>"$T/err" &&
	fail "restore replaced a file it was not told to"
grep -q "holds data (--overwrite" "$T/err" || fail "no reason given: $(cat "$T/err")"
$PROG verify -q "$T/ds" vm/901 qemu-server.conf "$T/r.conf" || fail "verify of the blob"
# Never over what is not a regular file, even an empty one or with --overwrite.
: >"$T/empty"
ln -s "$T/empty" "$T/link"
mkfifo "$T/fifo"
for d in "$T/link" "$T/fifo" /dev/null; do
	$PROG restore -q --overwrite "$T/ds" vm/901 qemu-server.conf "$d" 2>"$T/err" &&
		fail "restore wrote the blob over $d"
	grep -q "not a regular file" "$T/err" || fail "no reason for $d: $(cat "$T/err")"
done
[ -L "$T/link" ] && [ ! -s "$T/empty" ] && [ -p "$T/fifo" ] && [ -c /dev/null ] ||
	fail "a refused target was touched"
$PROG restore -q "$T/ds" vm/901 qemu-server.conf "$T/empty" || fail "restore into an empty file"
cmp "$T/empty" "$T/qemu-server.conf" || fail "the empty file's content"

# Encrypted: decrypted with the key, refused without it or when altered.
export PBS_ENCRYPTION_PASSWORD=vc-secret
$PROG key create "$T/key.json" >/dev/null
$PROG pack --lazy-chunk-dirs -q --keyfile "$T/key.json" --id 902 \
	--config "$T/qemu-server.conf" "$T/token.raw:drive-virtio0" "$T/ds"
$PROG restore -q --keyfile "$T/key.json" "$T/ds" vm/902 qemu-server.conf - >"$T/e.conf" ||
	fail "restore of the encrypted blob"
cmp "$T/e.conf" "$T/qemu-server.conf" || fail "decrypted configuration differs"
grep -q "^boot:" "$T/ds/vm/902/"*/qemu-server.conf.blob && fail "the blob is not encrypted"
$PROG restore -q "$T/ds" vm/902 qemu-server.conf - >/dev/null 2>"$T/err" &&
	fail "restored an encrypted blob without the key"
grep -q "missing key" "$T/err" || fail "no reason without the key: $(cat "$T/err")"
lm_mount "$T/emnt" --read-only --keyfile "$T/key.json" "$T/ds" vm/902
cmp "$T/emnt/qemu-server.conf" "$T/qemu-server.conf" || fail "the mount's encrypted configuration"
lm_umount "$T/emnt"
blob=$(echo "$T/ds/vm/902/"*/qemu-server.conf.blob)
printf 'X' | dd of="$blob" bs=1 seek=60 conv=notrunc status=none
$PROG restore -q --keyfile "$T/key.json" "$T/ds" vm/902 qemu-server.conf - >/dev/null 2>"$T/err" &&
	fail "restored an altered blob"
grep -q "qemu-server.conf.blob.*differs from the manifest" "$T/err" ||
	fail "no reason for the altered blob: $(cat "$T/err")"

# The mount shows it, read-only, beside the disks.
lm_mount "$T/mnt" --target-dir "$T/tgt" --allow-other "$T/ds" vm/901
cmp "$T/mnt/qemu-server.conf" "$T/qemu-server.conf" || fail "the mount's configuration differs"
[ "$(stat -c %a "$T/mnt/qemu-server.conf")" = 400 ] || fail "mode of the configuration"
( echo x >>"$T/mnt/qemu-server.conf" ) 2>/dev/null && fail "the configuration took a write"
ls "$T/mnt" | grep -qx qemu-server.conf || fail "not listed in the mount"

# The QEMU line: a shell script, extra arguments appended; notes said.
$PROG vm-config --accel "$accel" --cutover-qmp "$T/vm.qmp" "$T/mnt" >"$T/vm.sh" 2>"$T/notes" ||
	{ cat "$T/notes"; fail "vm-config qemu"; }
cat "$T/notes"
for n in "net0: virtio card on bridge vmbr0, VLAN 20" "ide2: a CD-ROM" "hostpci0: 0000:01:00.0"; do
	grep -q "NOTE $n" "$T/notes" || fail "no note '$n'"
	grep -q "^# NOTE $n" "$T/vm.sh" || fail "no comment '$n' in the script"
done
grep -q "does not know" "$T/notes" && fail "a known key called unknown"
grep -q -- "-smbios type=1,uuid=6f2c2c9e-93a5-4b8e-9d7c-4c2f6f1d0a11" "$T/vm.sh" || fail "no smbios uuid"
grep -q -- "mac=BC:24:11:AA:BB:CC" "$T/vm.sh" || fail "no MAC address"
grep -q -- "-m 512" "$T/vm.sh" || fail "memory"
: >"$T/console.log"
sh "$T/vm.sh" -display none -no-reboot -serial "file:$T/console.log" >"$T/qemu.log" 2>&1 &
qpid=$!
cleanup_fn "kill -9 $qpid"
for _ in $(seq 100); do [ -S "$T/vm.qmp" ] && break; sleep 0.1; done
qmp_call "$T/vm.qmp" query-status | grep -q running ||
	fail "the line's monitor (--cutover-qmp) does not answer"
booted=0
for _ in $(seq 400); do
	grep -q "LIVEMOUNT-GUEST-OK token=$tok" "$T/console.log" && { booted=1; break; }
	kill -0 $qpid 2>/dev/null || break
	sleep 1
done
[ $booted = 1 ] || { tail -20 "$T/console.log" "$T/qemu.log"; fail "no boot from the QEMU line"; }
wait $qpid 2>/dev/null || true
note "booted from the generated QEMU line ($accel)"

# The libvirt domain, on a private libvirtd (its serial console to a file).
source "$TESTS_DIR/lib/libvirt.sh"
libvirt_start
tok2=lv$RANDOM
printf '%s' "$tok2" | dd of="$T/mnt/drive-virtio1.img" conv=notrunc status=none
$PROG vm-config --format libvirt --accel "$accel" --name "pbslm-vc-$$" "$T/mnt" \
	>"$T/dom.xml" 2>/dev/null || fail "vm-config libvirt"
python3 - "$T/dom.xml" "$T/console2.log" <<'PY' || fail "the domain XML does not parse"
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.argv[1])
d = t.getroot()
assert d.find("memory").text == "512" and d.find("uuid").text.startswith("6f2c2c9e")
assert [s.get("file") for s in d.iter("source") if s.get("file")][0].endswith("/drive-virtio0.img")
assert d.find("devices/interface/mac").get("address") == "BC:24:11:AA:BB:CC"
devs = d.find("devices")
for e in list(devs):
    if e.tag in ("serial", "console"):
        devs.remove(e)
s = ET.SubElement(devs, "serial", type="file")
ET.SubElement(s, "source", path=sys.argv[2])
t.write(sys.argv[1])
PY
virsh -c "$U" create "$T/dom.xml" >"$T/virsh.out" 2>&1 ||
	{ cat "$T/virsh.out"; tail -20 "$T/lv/libvirtd.log"; fail "virsh create of the generated domain"; }
cleanup_fn "virsh -c '$U' destroy pbslm-vc-$$"
libvirt_wait_console "$T/console2.log" "$tok2" 400 ||
	{ tail -20 "$T/console2.log"; fail "no boot from the generated libvirt domain"; }
note "booted from the generated libvirt domain"
virsh -c "$U" destroy "pbslm-vc-$$" >/dev/null 2>&1 || true
lm_umount "$T/mnt"

# q35 with IDE and SATA disks: qemu-server puts IDE on the board's AHCI,
# a port each, and SATA on a controller of its own (ahci0); libvirt
# refuses two disks on one port, QEMU two devices on one bus.
cat >"$T/q35.conf" <<EOF2
machine: q35
memory: 256
ide0: local:903/vm-903-disk-0.raw,size=1M
ide1: local:903/vm-903-disk-1.raw,size=1M
sata0: local:903/vm-903-disk-2.raw,size=1M
#qmdump#map:ide0:drive-ide0:local:raw:
#qmdump#map:ide1:drive-ide1:local:raw:
#qmdump#map:sata0:drive-sata0:local:raw:
EOF2
$PROG pack --lazy-chunk-dirs -q --id 903 --config "$T/q35.conf" \
	"$T/token.raw:drive-ide0" "$T/token.raw:drive-ide1" \
	"$T/token.raw:drive-sata0" "$T/ds"
lm_mount "$T/qmnt" --target-dir "$T/qtgt" --allow-other "$T/ds" vm/903
$PROG vm-config --accel "$accel" "$T/qmnt" >"$T/q35.sh" 2>/dev/null || fail "vm-config q35"
sh "$T/q35.sh" -S -display none -qmp "unix:$T/q35.qmp,server=on,wait=off" \
	>"$T/q35.log" 2>&1 &
qpid=$!
cleanup_fn "kill -9 $qpid"
for _ in $(seq 100); do [ -S "$T/q35.qmp" ] && break; sleep 0.1; done
qmp_call "$T/q35.qmp" query-status | grep -q prelaunch ||
	fail "QEMU refused the q35 line: $(tail -3 "$T/q35.log")"
qmp_call "$T/q35.qmp" quit >/dev/null 2>&1
wait $qpid 2>/dev/null || true
$PROG vm-config --format libvirt --accel "$accel" --name "pbslm-q35-$$" "$T/qmnt" \
	>"$T/q35.xml" 2>/dev/null || fail "vm-config libvirt q35"
virsh -c "$U" create --paused "$T/q35.xml" >"$T/virsh.out" 2>&1 ||
	{ cat "$T/virsh.out"; fail "libvirt refused the q35 domain"; }
virsh -c "$U" destroy "pbslm-q35-$$" >/dev/null 2>&1
note "q35 with IDE and SATA disks: QEMU and libvirt take both"
lm_umount "$T/qmnt"
echo ok
