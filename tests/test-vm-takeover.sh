#!/bin/bash
# The VM outlives the server.  The small guest boots from a live mount
# over HTTP and runs a write-and-verify loop (files written, synced, read
# back with caches dropped) with a heartbeat on its console, while the
# serving process is killed with SIGKILL five times and then replaced by
# `restart` (an upgrade: the binary is replaced first, so the supervisor
# re-executes too).  The guest sees no I/O error and does not reboot,
# its heartbeat never stops for over 2 s, and once the restore completes
# the target holds what the guest wrote.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
source "$TESTS_DIR/lib/qemu.sh"
requires_fuse
requires debugfs
guest_image
note "guest image $img, accel $(qemu_accel "$img")"
$PROG pack --lazy-chunk-dirs -q --id 903 --time 1700000000 \
	"$img:drive-virtio0" "$T/ds"
snap=vm/903/2023-11-14T22:13:20Z
mnt=$T/mnt
cp "$PROG" "$T/bin"
nginx_start "$T/ds"
# Slow enough that chunks are still fetched during the kills.
PROG="$T/bin" lm_mount "$mnt" --target "$T/tgt.raw" --allow-other \
	--limit-rate 8M "$NGX_URL" $snap
vm_start none "loop40_$RANDOM" "$mnt/drive-virtio0.img"
vm_wait_heartbeats 5
for k in 1 2 3 4 5; do
	sleep 2
	srv=$(lm_server_pid "$mnt")
	kill -9 "$srv"
	for _ in $(seq 200); do
		[ "$(lm_server_pid "$mnt" 2>/dev/null)" != "$srv" ] && break
		sleep 0.05
	done
	[ "$(lm_server_pid "$mnt")" != "$srv" ] || fail "kill $k: no new server"
done
sleep 2
cp "$PROG" "$T/bin.new"
mv "$T/bin.new" "$T/bin"
$PROG restart "$mnt" || fail "restart"
[ "$(readlink "/proc/$LM_PID/exe")" = "$T/bin" ] ||
	fail "the supervisor was not re-executed"
at=$(vm_heartbeats)
note "killed 5 times and restarted once by heartbeat $at"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["restarts"] == 6, d["restarts"]' \
	"$mnt/.status" || fail "restarts: $(cat "$mnt/.status")"
vm_loop_check "takeover" "$at" "restart"
grep "served again" "$T/lm.log" | sed 's/^/# /'
lm_wait_complete "$mnt" 300
lm_umount "$mnt"
vm_loop_target "takeover" "$T/tgt.raw"
grep -q "giving up" "$T/lm.log" && fail "the supervisor gave up"
echo ok
