#!/bin/bash
# A live mount reads like the source while streaming, completes, and
# leaves a target equal to the source; state survives a remount.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
make_image "$T/src.img" 64 11
$PROG pack --lazy-chunk-dirs -q --id 7 "$T/src.img:drive-scsi0" "$T/ds"

# --no-stream first: reads come from the backup, on demand.
lm_mount "$T/mnt" --target "$T/tgt.raw" --no-stream "$T/ds" vm/7
ls "$T/mnt" | grep -qx drive-scsi0.img || fail "image file missing"
[ "$(stat -c %s "$T/mnt/drive-scsi0.img")" = "$(stat -c %s "$T/src.img")" ] ||
	fail "image size"
[ "$(lm_state "$T/mnt")" = on-demand ] || fail "state: $(lm_state "$T/mnt")"
cmp "$T/src.img" "$T/mnt/drive-scsi0.img" || fail "mounted image differs"
# Copy-on-read: what was read is now in the target.
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["disks"][0]; assert d["present"] > 0, d' \
	"$T/mnt/.status" || fail "copy-on-read filled nothing"
lm_umount "$T/mnt"
[ -f "$T/tgt.raw.lmstate" ] || fail "no state file"

# SIGTERM commits the state and exits cleanly.
lm_mount "$T/mnt" --target "$T/tgt.raw" --no-stream "$T/ds" vm/7
dd if="$T/mnt/drive-scsi0.img" of=/dev/null bs=1M skip=40 count=4 status=none
kill -TERM $LM_PID
wait $LM_PID || fail "daemon exit status after SIGTERM"
mountpoint -q "$T/mnt" && fail "still mounted after SIGTERM"

# Resume with the streamer: completes, then the target is the backup.
lm_mount "$T/mnt" --target "$T/tgt.raw" --connections 4 \
	--on-complete "env | grep -E ^PBSLM_[A-Z]+_?[0-9]*= | grep -v _DIR= | sort >'$T/env'; pwd >>'$T/env'; mv '$T/env' '$T/completed'" \
	"$T/ds" vm/7
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["disks"][0]; assert d["present"] >= 4 << 20, d' \
	"$T/mnt/.status" || fail "state before SIGTERM was not committed"
cmp "$T/src.img" "$T/mnt/drive-scsi0.img" || fail "differs while streaming"
timeout 60 $PROG status --watch "$T/mnt" >"$T/watch" || fail "status --watch"
grep -q "100.00%" "$T/watch" || fail "status --watch output: $(tail -3 "$T/watch")"
lm_wait_complete "$T/mnt" 60
for _ in $(seq 1 50); do [ -e "$T/completed" ] && break; sleep 0.1; done
[ -e "$T/completed" ] || fail "--on-complete did not run"
# What it is told, in the environment; it runs in /.
printf '%s\n' "PBSLM_CUTOVER=none" "PBSLM_DISKS=1" \
	"PBSLM_IMAGE_0=$T/mnt/drive-scsi0.img" "PBSLM_MOUNTPOINT=$T/mnt" \
	"PBSLM_NS=" "PBSLM_SNAPSHOT=vm/7/$(ls "$T/ds/vm/7" | grep -v owner)" \
	"PBSLM_STATE=complete" "PBSLM_TARGET_0=$T/tgt.raw" / >"$T/env.want"
diff "$T/env.want" "$T/completed" || fail "--on-complete's environment"
$PROG status "$T/mnt" | grep -q complete || fail "status command"
$PROG status --json "$T/mnt" | python3 -m json.tool >/dev/null || fail "--json"
lm_umount "$T/mnt"
cmp "$T/src.img" "$T/tgt.raw" || fail "target differs from the source"
$PROG verify -q "$T/ds" vm/7 drive-scsi0 "$T/tgt.raw"
is_sparse "$T/tgt.raw" || fail "zero chunks were written, not punched"

# After completion the figures are frozen: how long it took and the
# average rate, not a clock that runs on and a rate that decays.
lm_mount "$T/mnt" --target "$T/tgt2.raw" --limit-rate 64M "$T/ds" vm/7
lm_wait_complete "$T/mnt" 60
$PROG status --json "$T/mnt" >"$T/s1"
sleep 2.2
$PROG status --json "$T/mnt" >"$T/s2"
python3 - "$T/s1" "$T/s2" <<'PY' || fail "status after completion not frozen"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert a["took"] > 0 and a["took"] == b["took"], (a["took"], b["took"])
assert a["elapsed"] == b["elapsed"], (a["elapsed"], b["elapsed"])
for x, y in zip(a["disks"], b["disks"]):
    assert x["rate"] > 0 and x["rate"] == y["rate"], (x["rate"], y["rate"])
    assert x["eta"] == 0, x
PY
$PROG status "$T/mnt" | grep -q "took .* s" || fail "status: $($PROG status "$T/mnt")"
$PROG status "$T/mnt" | grep -q "/s average" || fail "status: no average rate"
lm_umount "$T/mnt"
echo ok
