#!/bin/bash
# Restore only what changed.  A 256 MiB disk of 64 distinct random
# chunks behind nginx; the chunk requests are counted in nginx's log.
#   --in-place onto an older copy with 0, 3 and 100 % of its chunks
#   changed (mount and restore; encrypted too): exactly the changed
#   chunks are fetched;
#   --seed: the disk inside a larger file at a chunk-aligned offset
#   (nothing fetched), at an unaligned one (found nothing, all fetched),
#   a seed changed behind its cached digests (the changed chunks are
#   caught and fetched);
#   the server killed in the check phase (a test fault after its 20th
#   check: the supervisor's next server resumes), then kill -9 of the
#   whole mount during the fetches and a new mount resumes, fetching
#   nothing twice but what was in flight; a guest (the model of
#   test-mount-crash)
#   reading and writing from the start, during the checks;
#   a target of another size is refused.
# Every case ends with the target equal to the snapshot (plus what the
# guest wrote), --verify passing where the mount verifies.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
requires_fuse
GM="python3 $TESTS_DIR/lib/guestmodel.py"
CS=$((4 << 20))
head -c $((64 * CS)) /dev/urandom >"$T/src.img"
$PROG pack --lazy-chunk-dirs -q --id 5 --time 1700000000 "$T/src.img:disk" "$T/ds"
snap=vm/5/2023-11-14T22:13:20Z
nginx_start "$T/ds"
export PBSLM_STATE_DIR=$T/state

# old CHUNK...: $T/old.img, the disk with those chunks changed.
old() {
	local c
	cp "$T/src.img" "$T/old.img"
	for c in "$@"; do
		head -c 65536 /dev/urandom |
			dd of="$T/old.img" bs=4096 seek=$((c * 1024 + 7)) conv=notrunc status=none
	done
}

# fetched: chunk requests since the last call (kept in a file: it is
# called in $(...)).
echo 0 >"$T/fetched0"
fetched() {
	local n
	n=$(nginx_count "/.chunks/")
	echo $((n - $(cat "$T/fetched0")))
	echo "$n" >"$T/fetched0"
}

# in_place_mount WHAT N CHUNK...: mount --in-place onto old CHUNK...,
# complete and verified, N chunks fetched, the target exact.
in_place_mount() {
	local what=$1 want=$2
	shift 2
	old "$@"
	fetched >/dev/null
	lm_mount "$T/mnt" --in-place --verify --target "$T/old.img" "$NGX_URL" $snap
	lm_wait_complete "$T/mnt" 120
	[ "$(lm_state "$T/mnt")" = verified ] || fail "$what: $(lm_state "$T/mnt")"
	python3 - "$T/mnt/.status" "$want" <<'PY' || fail "$what: .status: $(cat "$T/mnt/.status")"
import json, sys
d = json.load(open(sys.argv[1]))["disks"][0]
want = int(sys.argv[2])
assert d["fetched_chunks"] == want, d
assert d["reused"]["target_chunks"] == 64 - want, d
assert d["reused"]["not_downloaded"] == (64 - want) * (4 << 20), d
assert d["check"]["total"] == 64 and d["check"]["done"] == 64, d
PY
	$PROG status "$T/mnt" | grep -q "reused .* $((64 - want)) chunks from the target, 0 from seeds; $want fetched; checked 64 of 64" ||
		fail "$what: status: $($PROG status "$T/mnt")"
	lm_umount "$T/mnt"
	[ "$(fetched)" = "$want" ] || fail "$what: chunk requests: not $want"
	cmp "$T/old.img" "$T/src.img" || fail "$what: the target differs"
	rm -f "$T/old.img.lmstate"
}

in_place_mount "0%" 0
in_place_mount "3%" 2 7 40
in_place_mount "100%" 64 $(seq 0 63)

# restore --in-place: the file itself, only what differs fetched.
old 3 33
fetched >/dev/null
$PROG restore -q --in-place "$NGX_URL" $snap disk "$T/old.img" ||
	fail "restore --in-place"
[ "$(fetched)" = 2 ] || fail "restore --in-place fetched not 2"
cmp "$T/old.img" "$T/src.img" || fail "restore --in-place: differs"
[ -e "$T/old.img.partial" ] && fail "restore --in-place made a copy"
# Without it, a target with data is refused, naming both ways.
expect_fail $PROG restore "$NGX_URL" $snap disk "$T/old.img"
assert_err_contains "give --in-place"
assert_err_contains "--overwrite"
# Another size: not an older version of this disk.
truncate -s +4096 "$T/old.img"
expect_fail $PROG restore --in-place "$NGX_URL" $snap disk "$T/old.img"
assert_err_contains "has 268439552 bytes, the disk 268435456"
mkdir -p "$T/mnt"
expect_fail $PROG mount -f --in-place --target "$T/old.img" "$NGX_URL" $snap "$T/mnt"
assert_err_contains "not an older version of this disk"
[ "$(stat -c %s "$T/old.img")" = 268439552 ] || fail "a refused target changed"
rm -f "$T/old.img"

# Encrypted: digests with the key's id_key.
export PBS_ENCRYPTION_PASSWORD=correct-horse
$PROG key create "$T/key.json" >/dev/null
$PROG pack --lazy-chunk-dirs -q --keyfile "$T/key.json" --id 6 --time 1700000000 \
	"$T/src.img:disk" "$T/ds"
old 11 12 50
fetched >/dev/null
$PROG restore -q --keyfile "$T/key.json" --in-place "$NGX_URL" vm/6 disk "$T/old.img" ||
	fail "encrypted restore --in-place"
[ "$(fetched)" = 3 ] || fail "encrypted: not 3 fetched"
cmp "$T/old.img" "$T/src.img" || fail "encrypted: differs"
unset PBS_ENCRYPTION_PASSWORD

# Seeds: at a chunk-aligned offset of a larger file, nothing fetched.
{ head -c $((3 * CS)) /dev/urandom; cat "$T/src.img"; head -c 12345 /dev/urandom; } >"$T/seed.img"
fetched >/dev/null
lm_mount "$T/mnt" --seed "$T/seed.img" --verify --target "$T/new.img" "$NGX_URL" $snap
lm_wait_complete "$T/mnt" 120
[ "$(lm_state "$T/mnt")" = verified ] || fail "seed: $(lm_state "$T/mnt")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["seeds"]; k=d["disks"][0]["reused"]; assert s["ready"] and s["used"] == 64 and k["seed_chunks"] == 64, d' \
	"$T/mnt/.status" || fail "seed: .status: $(cat "$T/mnt/.status")"
lm_umount "$T/mnt"
[ "$(fetched)" = 0 ] || fail "seed: chunks were fetched"
cmp "$T/new.img" "$T/src.img" || fail "seed: differs"
rm -f "$T/new.img" "$T/new.img.lmstate"
ls "$T/state/seeds/"seed-*.digests >/dev/null || fail "no digest cache"
# Unaligned: nothing found, all fetched, still exact.
{ head -c 1000 /dev/urandom; cat "$T/src.img"; } >"$T/seed2.img"
$PROG restore -q --seed "$T/seed2.img" "$NGX_URL" $snap disk "$T/new.img" ||
	fail "unaligned seed"
[ "$(fetched)" = 64 ] || fail "unaligned seed: not 64 fetched"
cmp "$T/new.img" "$T/src.img" || fail "unaligned seed: differs"
rm -f "$T/new.img"
# Changed behind its cached digests (same size and time): caught.
m=$(stat -c %y "$T/seed.img")
for c in 4 20; do
	head -c 4096 /dev/urandom |
		dd of="$T/seed.img" bs=4096 seek=$(((c + 3) * 1024 + 9)) conv=notrunc status=none
done
touch -d "$m" "$T/seed.img"
$PROG restore --seed "$T/seed.img" "$NGX_URL" $snap disk "$T/new.img" 2>"$T/err" ||
	fail "changed seed: $(cat "$T/err")"
grep -q "seed '$T/seed.img' changed since it was indexed" "$T/err" ||
	fail "the changed seed was not told: $(cat "$T/err")"
[ "$(fetched)" = 2 ] || fail "changed seed: not 2 fetched"
cmp "$T/new.img" "$T/src.img" || fail "changed seed: differs"
rm -f "$T/new.img"

# The server killed in the check phase (after its 20th check: the
# supervisor starts another, which resumes), then kill -9 of the whole
# mount in the fetches (slowed down); a new mount resumes each time.
# Two connections: at most two transfers are lost to each kill.
old $(seq 0 2 63)
fetched >/dev/null
PBSLM_FAULT_KILL_AFTER=check:20 lm_mount "$T/mnt" --in-place --limit-rate 16M \
	--connections 2 --target "$T/old.img" "$NGX_URL" $snap
for _ in $(seq 100); do
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["restarts"] >= 1 and 4 <= d["disks"][0]["fetched_chunks"] < 28' \
		"$T/mnt/.status" 2>/dev/null && break
	sleep 0.1
done
grep -q "test fault: killed after check 20" "$T/lm.log" ||
	fail "the server was not killed in the check phase"
srv=$(lm_server_pid "$T/mnt")
kill -9 $LM_PID
for _ in $(seq 50); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
fusermount3 -u -z "$T/mnt"
lm_mount "$T/mnt" --in-place --verify --target "$T/old.img" "$NGX_URL" $snap
lm_wait_complete "$T/mnt" 120
[ "$(lm_state "$T/mnt")" = verified ] || fail "resumed: $(lm_state "$T/mnt")"
lm_umount "$T/mnt"
cmp "$T/old.img" "$T/src.img" || fail "resumed: differs"
n=$(fetched)
[ "$n" -ge 32 ] && [ "$n" -le 36 ] || fail "resumed: $n chunks fetched for 32 changed"
rm -f "$T/old.img.lmstate"

# A guest from the first moment, reading and writing while the chunks
# are checked (and the server killed once in the check phase): every
# read matches the model, the target ends as the model.
old 1 5 9 30 31 60
cp "$T/src.img" "$T/model"
: >"$T/journal"
lm_mount "$T/mnt" --in-place --verify --limit-rate 32M --target "$T/old.img" \
	"$NGX_URL" $snap
GM_NO_ERRORS=1 $GM run "$T/mnt/disk.img" "$T/model" "$T/journal" 600 $RANDOM &
gpid=$!
cleanup_fn "kill $gpid"
kill -9 "$(lm_server_pid "$T/mnt")"
sleep 4
kill $gpid
wait $gpid 2>/dev/null || true
$GM resolve "$T/mnt/disk.img" "$T/model" "$T/journal" || fail "guest: image vs model"
lm_wait_complete "$T/mnt" 120
[ "$(lm_state "$T/mnt")" = verified ] || fail "guest: $(lm_state "$T/mnt")"
lm_umount "$T/mnt"
$GM compare "$T/old.img" "$T/model" || fail "guest: target vs model"
echo ok
