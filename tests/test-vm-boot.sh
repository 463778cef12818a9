#!/bin/bash
# A real VM boots from the live mount: BIOS, bootloader, kernel and root
# file system all come through pbs-livemount (served by nginx), once with
# cache=none and once with cache=writeback, and once more from a PBS
# repository (the PBS double: API and reader protocol).  Then the stream completes,
# --verify passes, the target holds the guest's marker, e2fsck is clean,
# and the target boots again without pbs-livemount.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
source "$TESTS_DIR/lib/qemu.sh"
source "$TESTS_DIR/lib/pbs.sh"
requires_fuse
requires debugfs
guest_image
note "guest image $img, accel $(qemu_accel "$img")"
$PROG pack --lazy-chunk-dirs -q --id 900 "$img:drive-virtio0" "$T/ds"
nginx_start "$T/ds"
pbs_start "$T/ds"

# boot_via_mount CACHE TOKEN [REPO [NAME]]
boot_via_mount() {
	local cache=$1 token=$2 repo=${3:-$NGX_URL} name=${4:-$1}
	rm -f "$T/tgt-$name.raw" "$T/tgt-$name.raw.lmstate"
	lm_mount "$T/mnt" --target "$T/tgt-$name.raw" --verify \
		--allow-other "$repo" vm/900
	qemu_boot "$T/mnt/drive-virtio0.img" "$cache" "$token" \
		"$T/console-$name.log" 400 || {
		tail -30 "$T/console-$name.log"
		fail "no console line booting through the mount ($name)"
	}
	lm_wait_complete "$T/mnt" 300
	[ "$(lm_state "$T/mnt")" = verified ] ||
		fail "state after boot ($name): $(lm_state "$T/mnt")"
	lm_umount "$T/mnt"
	# The guest's writes are in the target.
	dd if="$T/tgt-$name.raw" of="$T/part" bs=1M skip=1 status=none
	e2fsck -fn "$T/part" >"$T/fsck.log" 2>&1 ||
		{ cat "$T/fsck.log"; fail "e2fsck of the target ($name)"; }
	debugfs -R 'cat /marker.txt' "$T/part" 2>/dev/null | grep -q "token=$token" ||
		fail "marker missing in the target ($name)"
}

boot_via_mount none tok$RANDOM
boot_via_mount writeback tok$RANDOM
PBS_PASSWORD=$PBS_TOKEN_SECRET PBS_FINGERPRINT=$PBS_FP \
	boot_via_mount none tok$RANDOM "$PBS_TOKEN_ID@$PBS_HOST:store1" pbs
[ "$(pbs_count 'chunk.* 401')" = 0 ] || fail "a /chunk request met a 401"
# The restored target is a complete disk: it boots on its own.
qemu_boot "$T/tgt-writeback.raw" writeback direct$RANDOM "$T/console-direct.log" 400 ||
	fail "the restored target does not boot by itself"
echo ok
