#!/bin/bash
# A live mount over HTTPS while the store goes away: present blocks keep
# working, absent ones fail with EIO after --remote-timeout, status says
# paused, and when nginx is back the streamer resumes by itself and the
# target ends equal to the source.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires_fuse
make_image "$T/src.img" 48 81
$PROG pack --lazy-chunk-dirs -q --id 6 "$T/src.img:disk" "$T/ds"
nginx_start "$T/ds" --tls --lua
nginx_fault "delay 600"	# streaming (one slot of two) takes ~7 s
lm_mount "$T/mnt" --fingerprint "$NGX_FP" --target "$T/tgt.raw" \
	--connections 2 --remote-timeout 3 --request-timeout 2 \
	--debug "${LM_DEBUG:-stream}" "$NGX_URL" vm/6
img=$T/mnt/disk.img
# Read the first 8 MiB now: those blocks become present (copy-on-read).
cmp -n $((8 << 20)) "$T/src.img" "$img" || fail "reads over https"
sleep 1
nginx_stop
# Present data still reads; the last chunk is (most likely) absent.
cmp -n $((8 << 20)) "$T/src.img" "$img" || fail "present blocks during outage"
start=$(date +%s)
if dd if="$img" of=/dev/null bs=1M skip=47 count=1 iflag=direct 2>"$T/dd.err"; then
	fail "read of an absent chunk succeeded with the store down"
fi
grep -q "Input/output error" "$T/dd.err" || fail "not EIO: $(cat "$T/dd.err")"
secs=$(($(date +%s) - start))
[ $secs -le 15 ] || fail "EIO took $secs s"
for _ in $(seq 1 50); do
	[ "$(lm_state "$T/mnt")" = paused ] && break
	sleep 0.2
done
[ "$(lm_state "$T/mnt")" = paused ] || {
	cat "$T/mnt/.status" "$T/lm.log"
	fail "state during outage: $(lm_state "$T/mnt")"
}
# And it stays paused while the store is down, also while a retry is
# on the wire (each takes --remote-timeout, 3 s), not only in back-off.
for _ in $(seq 1 20); do
	st=$(lm_state "$T/mnt")
	[ "$st" = paused ] || {
		cat "$T/mnt/.status" "$T/lm.log"
		fail "state flapped to '$st' during the outage"
	}
	sleep 0.25
done
nginx_restart
nginx_fault off
lm_wait_complete "$T/mnt" 120
cmp "$T/src.img" "$img" || fail "image after the outage"
lm_umount "$T/mnt"
cmp "$T/src.img" "$T/tgt.raw" || fail "target after the outage"
echo ok
