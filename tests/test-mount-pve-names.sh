#!/bin/bash
# --target-dir DIR --pve-names: each disk's target is vm-ID-disk-N.raw, N
# as PVE's restore numbers a backup's disks (by device name: efidisk0,
# scsi0, scsi1, scsi10, tpmstate0, virtio0), also when only some are
# mounted; each holds its disk once complete.  Refused without
# --target-dir and for a container.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
devs="scsi1 virtio0 scsi10 efidisk0 tpmstate0-backup scsi0"
args=()
seed=1
for d in $devs; do
	make_image "$T/$d.raw" 5 $seed
	seed=$((seed + 1))
	args+=("$T/$d.raw:drive-$d")
done
$PROG pack --lazy-chunk-dirs -q --id 123 "${args[@]}" "$T/ds"
declare -A want=([efidisk0]=0 [scsi0]=1 [scsi1]=2 [scsi10]=3 [tpmstate0-backup]=4 [virtio0]=5)

lm_mount "$T/mnt" --target-dir "$T/pve" --pve-names "$T/ds" vm/123
lm_wait_complete "$T/mnt" 120
lm_umount "$T/mnt"
[ "$(ls "$T/pve" | grep -c '\.raw$')" = 6 ] || fail "targets: $(ls "$T/pve")"
for d in $devs; do
	cmp "$T/$d.raw" "$T/pve/vm-123-disk-${want[$d]}.raw" ||
		fail "drive-$d is not vm-123-disk-${want[$d]}.raw"
	grep -q "drive-$d -> $T/pve/vm-123-disk-${want[$d]}.raw" "$T/lm.log" ||
		fail "the log does not say where drive-$d went"
done
note "six disks named as PVE's restore names them"

# One disk of six: its number is still its rank among all six.
lm_mount "$T/mnt" --target-dir "$T/one" --pve-names --archive drive-scsi10 "$T/ds" vm/123
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cmp "$T/scsi10.raw" "$T/one/vm-123-disk-3.raw" || fail "--archive drive-scsi10"

expect_fail $PROG mount --pve-names --read-only "$T/ds" vm/123 "$T/mnt"
grep -q -- "--pve-names names the files of --target-dir" "$T/err" || fail "usage: $(cat "$T/err")"
$PROG pack --lazy-chunk-dirs -q --type ct --id 5 "$T/scsi0.raw:drive-x" "$T/ds"
mkdir -p "$T/mnt2"
expect_fail $PROG mount -f --target-dir "$T/ct" --pve-names "$T/ds" ct/5 "$T/mnt2"
grep -q "names a VM's disks" "$T/err" || fail "a container: $(cat "$T/err")"
echo ok
