#!/bin/bash
# The background copy must not take the CPU from the VM it serves: the
# stream workers run at nice 19, the rest of the daemon (FUSE threads
# answering the guest, the fetch loop) at the nice it was started with.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires_fuse
make_image "$T/a.img" 64 3
$PROG pack -q --id 1 "$T/a.img:disk" "$T/ds"
nginx_start "$T/ds" --lua
nginx_fault "delay 1000"	# keep the stream busy for a few seconds
lm_mount "$T/mnt" --target "$T/t.raw" --connections 4 "$NGX_URL" vm/1
sleep 1
[ "$(lm_state "$T/mnt")" = streaming ] ||
	fail "state $(lm_state "$T/mnt"), expected streaming"
# Field 19 of /proc/PID/task/TID/stat is the nice value; the command
# name (field 2) may hold spaces, so count from after its ')'.
nice_of() { sed 's/.*) //' "$1" | awk '{print $17}'; }
low=0 normal=0
for st in /proc/$LM_PID/task/*/stat; do
	case $(nice_of "$st") in
	19) low=$((low + 1)) ;;
	0) normal=$((normal + 1)) ;;
	*) fail "thread $st at nice $(nice_of "$st")" ;;
	esac
done
note "$low threads at nice 19, $normal at nice 0"
[ $low = 4 ] || fail "$low stream workers at nice 19, expected 4"
[ "$(nice_of /proc/$LM_PID/stat)" = 0 ] || fail "main thread reniced"
[ $normal -ge 2 ] || fail "only $normal threads at nice 0"
nginx_fault off
cmp "$T/a.img" "$T/mnt/disk.img" || fail "mount reads"
lm_wait_complete "$T/mnt" 60
lm_umount "$T/mnt"
cmp "$T/a.img" "$T/t.raw" || fail "target after the stream"
echo ok
