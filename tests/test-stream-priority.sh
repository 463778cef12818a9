#!/bin/bash
# The background copy gives way to the VM it serves.  CPU: the stream
# workers run at nice 19, and so do the fetch loops (one per core) while
# they serve only the stream; the rest of the daemon (FUSE threads
# answering the guest) stays at the nice it was started with, and the
# loops return to it as soon as a guest read waits for the network.  I/O: while
# the guest reads or writes, only two chunks are copied at a time, and
# .status says so; once the guest rests the stream runs at full width.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires_fuse
make_image "$T/a.img" 64 3
$PROG pack --lazy-chunk-dirs -q --id 1 "$T/a.img:disk" "$T/ds"
head -c $((256 << 20)) /dev/urandom >"$T/b.img"	# 64 distinct chunks
$PROG pack --lazy-chunk-dirs -q --id 2 "$T/b.img:disk" "$T/ds"
nginx_start "$T/ds" --lua
nginx_fault "delay 1000"	# keep the stream busy for a few seconds
lm_mount "$T/mnt" --target "$T/t.raw" --connections 4 "$NGX_URL" vm/1
sleep 1
[ "$(lm_state "$T/mnt")" = streaming ] ||
	fail "state $(lm_state "$T/mnt"), expected streaming"
# Field 19 of /proc/PID/task/TID/stat is the nice value; the command
# name (field 2) may hold spaces, so count from after its ')'.
nice_of() { sed 's/.*) //' "$1" | awk '{print $17}'; }
count_nice() {
	low=0 normal=0
	for st in /proc/$SRV/task/*/stat; do
		case $(nice_of "$st") in
		19) low=$((low + 1)) ;;
		0) normal=$((normal + 1)) ;;
		*) fail "thread $st at nice $(nice_of "$st")" ;;
		esac
	done
}
SRV=$(lm_server_pid "$T/mnt")
loops=$(grep -l '^[0-9]* (lm-fetch)' /proc/$SRV/task/*/stat | wc -l)
want=$(getconf _NPROCESSORS_ONLN)	# as xfer_threads counts
[ "$want" -le 4 ] || want=4	# at most --connections
[ "$loops" = "$want" ] || fail "$loops fetch loops, expected $want"
count_nice
note "streaming only: $low threads at nice 19, $normal at nice 0" \
	"($loops fetch loops)"
[ $low = $((4 + loops)) ] ||
	fail "$low threads at nice 19, expected 4 workers + $loops loops"
[ "$(nice_of /proc/$SRV/stat)" = 0 ] || fail "main thread reniced"
[ $normal -ge 2 ] || fail "only $normal threads at nice 0"
# A guest read of a chunk the stream has not reached (the last one)
# waits a second for nginx; meanwhile the loops are back at nice 0.
dd if="$T/mnt/disk.img" of=/dev/null bs=4k count=1 skip=$(((64 << 8) - 1)) \
	iflag=direct status=none &
reader=$!
sleep 0.5
count_nice
wait $reader || fail "guest read during the stream"
note "guest read waiting: $low threads at nice 19, $normal at nice 0"
[ $low = 4 ] || fail "$low threads at nice 19 while a guest read waits"
nginx_fault off
cmp "$T/a.img" "$T/mnt/disk.img" || fail "mount reads"
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cmp "$T/a.img" "$T/t.raw" || fail "target after the stream"

# Giving way: 64 chunks at 0.5 s each, 14 transfers wide.  A guest
# reading one block every 20 ms holds the stream to two at a time.
status() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["stream_yielding"], d["disks"][0]["chunks_left"])' "$T/mnt/.status"
}
nginx_fault "delay 500"
lm_mount "$T/mnt" --target "$T/t2.raw" --connections 16 "$NGX_URL" vm/2
dd if="$T/mnt/disk.img" of=/dev/null bs=4k count=1 status=none
# Busy until told to stop (not for "SECONDS + 4": whole seconds, that
# may be barely three).
(
	while [ ! -e "$T/guest.stop" ]; do
		dd if="$T/mnt/disk.img" of=/dev/null bs=4k count=1 \
			iflag=direct status=none
		sleep 0.02
	done
) &
guest=$!
cleanup_fn "kill $guest"
sleep 3
read -r yielding left < <(status)
note "guest busy for 3 s: stream_yielding $yielding, $left chunks left"
[ "$yielding" = True ] || fail "the stream does not give way to the guest"
# Full width copies all 64 within 2.5 s; two wide leaves about 30.
[ "$left" -ge 10 ] || fail "only $left chunks left: the stream did not yield"
touch "$T/guest.stop"
wait $guest
sleep 0.5
read -r yielding left < <(status)
[ "$yielding" = False ] || [ "$left" = 0 ] ||
	fail "still giving way after the guest stopped"
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cmp "$T/b.img" "$T/t2.raw" || fail "target after the stream"
echo ok
