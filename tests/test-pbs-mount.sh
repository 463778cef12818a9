#!/bin/bash
# Live mounts from a PBS repository (the PBS double): plain and
# encrypted, byte-identical while streaming and after completion with
# --verify; fio --verify through the mount; the server dropping the
# connection, sending GOAWAY, stalling one stream, and being killed and
# restarted mid-stream: every time a new session downloads the index
# again, the mount completes exact, and no /chunk request ever meets a
# 401; streams in flight stay within the server's MAX_CONCURRENT_STREAMS;
# unmount ends the session and the daemon at once.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/pbs.sh"
requires_fuse
requires fio
make_image "$T/src.img" 64 21
PBS_ENCRYPTION_PASSWORD=key-pass $PROG key create "$T/key.json" >/dev/null
$PROG pack --lazy-chunk-dirs -q --id 200 "$T/src.img:drive-scsi0" "$T/ds"
PBS_ENCRYPTION_PASSWORD=key-pass $PROG pack --lazy-chunk-dirs -q --id 201 \
	--keyfile "$T/key.json" "$T/src.img:drive-scsi0" "$T/ds"
pbs_start "$T/ds" --max-streams 4
export PBS_FINGERPRINT=$PBS_FP PBS_PASSWORD=$PBS_TOKEN_SECRET
export PBS_ENCRYPTION_PASSWORD=key-pass
repo="$PBS_TOKEN_ID@$PBS_HOST:store1"
img=$T/mnt/drive-scsi0.img

# 1. Plain, --verify, reads while streaming.
lm_mount "$T/mnt" --target "$T/t1.raw" --verify --limit-rate 30M \
	--connections 16 "$repo" vm/200
cmp -n $((16 << 20)) "$T/src.img" "$img" || fail "reads while streaming"
lm_wait_complete "$T/mnt" 120
[ "$(lm_state "$T/mnt")" = verified ] || fail "state: $(lm_state "$T/mnt")"
cmp "$T/src.img" "$img" || fail "image after completion"
lm_umount "$T/mnt"
cmp "$T/src.img" "$T/t1.raw" || fail "target"
peak=$(awk '/peak-streams/ {print $NF}' "$PBS_LOG" | sort -n | tail -1)
note "peak streams in flight: $peak (server allows 4, --connections 16)"
[ "${peak:-0}" -ge 2 ] && [ "$peak" -le 4 ] ||
	fail "streams in flight: $peak, want 2..4"
# One session per core, each with its index before its chunks, and the
# chunks spread over all of them.
want=$(getconf _NPROCESSORS_ONLN)	# as xfer_threads counts
[ "$want" -le 8 ] || want=8
sessions=$(pbs_count 'reader?.* 101$')
serving=$(awk '/GET \/chunk.* 200$/ {print $1}' "$PBS_LOG" | sort -u | wc -l)
note "$sessions sessions, $serving of them served chunks"
[ "$sessions" = "$want" ] || fail "$sessions sessions, want $want"
[ "$serving" = "$want" ] || fail "chunks came from $serving sessions"
[ "$(pbs_count 'fidx 200')" -ge "$sessions" ] ||
	fail "a session without its index"
[ "$(pbs_count 'chunk.* 401')" = 0 ] || fail "a /chunk request met a 401"

# 2. Encrypted, and fio --verify through the mount.
lm_mount "$T/mnt" --target "$T/t2.raw" --keyfile "$T/key.json" "$repo" vm/201
cmp "$T/src.img" "$img" || fail "encrypted image"
fio --name=guest --filename="$img" --rw=randrw --rwmixread=50 \
	--bssplit=512/10:4k/50:64k/20:1m/20 --blockalign=512 --offset=8m \
	--size=40m --ioengine=psync --fsync=32 --verify=crc32c \
	--verify_fatal=1 --randseed=77 --verify_state_save=0 \
	--output="$T/fio.txt" || { cat "$T/fio.txt"; fail "fio verify"; }
lm_wait_complete "$T/mnt" 120
lm_umount "$T/mnt"

# 3. Faults mid-stream: each time a new session, the index again, exact.
# One session (--connections 1), so that the one the fault hits must be
# used again; the last round drops one of the sessions a core each.
for fault in "drop-after 3" "goaway-after 3" "stall-after 3" restart \
	"drop-after 3/all"; do
	conns=(--connections 1)
	[ "${fault#*/}" = all ] && conns=()
	fault=${fault%/all}
	rm -f "$T/t3.raw" "$T/t3.raw.lmstate"
	: >"$PBS_LOG"
	# 19 MiB on the wire: at 5M the stream still runs when the server
	# goes away 1 s in.  No boot trace: its prefetch is not under test.
	rate=20M
	[ "$fault" = restart ] && rate=5M
	lm_mount "$T/mnt" --target "$T/t3.raw" --limit-rate $rate --no-trace \
		--request-timeout 3 "${conns[@]}" "$repo" vm/200
	# The mount's sessions (one per core) are up once the index is in.
	before=$(pbs_count 'reader?.* 101$')
	if [ "$fault" = restart ]; then
		sleep 1
		[ "$(lm_state "$T/mnt")" = streaming ] ||
			fail "restart: the stream ended before the server went away"
		pbs_stop
		sleep 1
		pbs_restart
	else
		pbs_fault "$fault"
	fi
	lm_wait_complete "$T/mnt" 120
	pbs_fault off
	cmp "$T/src.img" "$img" || fail "$fault: image differs"
	lm_umount "$T/mnt"
	cmp "$T/src.img" "$T/t3.raw" || fail "$fault: target differs"
	sessions=$(pbs_count 'reader?.* 101$')
	note "$fault: $sessions sessions ($before at first)," \
		"$(pbs_count 'fidx 200') index downloads"
	[ "$before" -ge 1 ] || fail "$fault: no session before the fault"
	[ "$fault" = "stall-after 3" ] || [ ${#conns[@]} = 0 ] ||
		[ "$sessions" -gt "$before" ] || fail "$fault: no new session"
	[ "$(pbs_count 'fidx 200')" -ge "$sessions" ] ||
		fail "$fault: a session without its index"
	[ "$(pbs_count 'chunk.* 401')" = 0 ] ||
		fail "$fault: a /chunk request met a 401"
done

# 4. Unmount while every chunk request stalls: gone at once.
lm_mount "$T/mnt" --target "$T/t4.raw" "$repo" vm/200
pbs_fault "stall-after 0"
dd if="$img" of=/dev/null bs=1M skip=40 count=1 iflag=direct 2>/dev/null &
sleep 1
fusermount3 -u -z "$T/mnt"
for _ in $(seq 1 50); do kill -0 $LM_PID 2>/dev/null || break; sleep 0.1; done
kill -0 $LM_PID 2>/dev/null && fail "daemon still runs 5 s after unmount"
pbs_fault off
echo ok
