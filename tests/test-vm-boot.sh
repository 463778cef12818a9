#!/bin/bash
# A real VM boots from the live mount: BIOS, bootloader, kernel and root
# file system all come through pbs-livemount (served by nginx), once with
# cache=none and once with cache=writeback.  Then the stream completes,
# --verify passes, the target holds the guest's marker, e2fsck is clean,
# and the target boots again without pbs-livemount.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
source "$TESTS_DIR/lib/qemu.sh"
requires_fuse
requires debugfs
img=$("$TESTS_DIR/guest/build-image.sh" --cached 2>"$T/build.log") ||
	skip "cannot build the guest image: $(tail -1 "$T/build.log")"
note "guest image $img, accel $(qemu_accel "$img")"
$PROG pack -q --id 900 "$img:drive-virtio0" "$T/ds"
nginx_start "$T/ds"

boot_via_mount() {
	local cache=$1 token=$2
	rm -f "$T/tgt-$cache.raw" "$T/tgt-$cache.raw.lmstate"
	lm_mount "$T/mnt" --target "$T/tgt-$cache.raw" --verify \
		--allow-other "$NGX_URL" vm/900
	qemu_boot "$T/mnt/drive-virtio0.img" "$cache" "$token" \
		"$T/console-$cache.log" 400 || {
		tail -30 "$T/console-$cache.log"
		fail "no console line booting through the mount ($cache)"
	}
	lm_wait_complete "$T/mnt" 300
	[ "$(lm_state "$T/mnt")" = verified ] ||
		fail "state after boot ($cache): $(lm_state "$T/mnt")"
	lm_umount "$T/mnt"
	# The guest's writes are in the target.
	dd if="$T/tgt-$cache.raw" of="$T/part" bs=1M skip=1 status=none
	e2fsck -fn "$T/part" >"$T/fsck.log" 2>&1 ||
		{ cat "$T/fsck.log"; fail "e2fsck of the target ($cache)"; }
	debugfs -R 'cat /marker.txt' "$T/part" 2>/dev/null | grep -q "token=$token" ||
		fail "marker missing in the target ($cache)"
}

boot_via_mount none tok$RANDOM
boot_via_mount writeback tok$RANDOM
# The restored target is a complete disk: it boots on its own.
qemu_boot "$T/tgt-writeback.raw" writeback direct$RANDOM "$T/console-direct.log" 400 ||
	fail "the restored target does not boot by itself"
echo ok
