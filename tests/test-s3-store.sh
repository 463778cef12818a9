#!/bin/bash
# A PBS 4 S3 datastore on a real S3 server: Debian's radosgw (Ceph) in a
# throwaway single-host cluster (tests/lib/rgw.sh).  pack writes into
# the bucket in PBS's layout (deduplicated by conditional PUT); list,
# restore, verify and mounts (plain and encrypted, with --verify and
# fio) read it byte-identical; listings go past 1,000 keys; a wrong
# secret and a missing chunk are one-line errors that say what to do;
# radosgw stopped and started again mid-stream: the mount completes
# exact.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/rgw.sh"
requires_fuse
requires fio
python3 -c 'import botocore' 2>/dev/null || skip "python3-botocore missing"
rgw_start
note "radosgw cluster up in $RGW_START_MS ms, $(($(rgw_rss_kib) / 1024)) MiB resident"
rgw_bucket pbs-bucket
export AWS_ACCESS_KEY_ID=$RGW_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET
export PBS_ENCRYPTION_PASSWORD=key-pass
unset AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION
S3=(--s3-endpoint "$RGW_URL")
repo=s3://pbs-bucket/store1
s3t() { python3 "$TESTS_DIR/lib/s3tool.py" "$RGW_URL" "$RGW_KEY" "$RGW_SECRET" "$@"; }
make_image "$T/src.img" 48 61
$PROG key create "$T/key.json" >/dev/null

# pack into the bucket, twice: the second run stores no chunk again.
$PROG pack --lazy-chunk-dirs -q "${S3[@]}" --id 100 --time 1700000000 \
	"$T/src.img:drive-scsi0" "$repo" || fail "pack to S3"
$PROG pack --lazy-chunk-dirs "${S3[@]}" --id 100 --time 1700000100 "$T/src.img:drive-scsi0" \
	"$repo" 2>"$T/pack2" || fail "second pack"
grep -q " 0 new" "$T/pack2" || fail "no dedup against the bucket: $(cat "$T/pack2")"
$PROG pack --lazy-chunk-dirs -q "${S3[@]}" --id 101 --keyfile "$T/key.json" \
	"$T/src.img:drive-scsi0" "$repo" || fail "encrypted pack to S3"
s3t keys pbs-bucket store1/ >"$T/keys"
grep -q '^store1/.chunks/[0-9a-f]\{4\}/[0-9a-f]\{64\}$' "$T/keys" ||
	fail "no chunk in PBS's layout: $(head -3 "$T/keys")"
grep -q '^store1/.cnt/vm/100/2023-11-14T22:13:20Z/index.json.blob$' \
	"$T/keys" || fail "no manifest in PBS's layout"

$PROG list "${S3[@]}" "$repo" >"$T/list" || fail "list"
[ "$(grep -c '^vm/100/' "$T/list")" = 2 ] || fail "list: $(cat "$T/list")"
# Namespaces in a bucket: prefixes under .cnt/ns/, a group named "ns" is
# still a group.
$PROG pack --lazy-chunk-dirs -q "${S3[@]}" --ns prod/web --id ns --time 1700000000 \
	"$T/src.img:drive-scsi0" "$repo" || fail "pack into a namespace"
[ "$($PROG list --namespaces "${S3[@]}" "$repo" | tr '\n' ' ')" = "prod prod/web " ] ||
	fail "namespaces in the bucket: $($PROG list --namespaces "${S3[@]}" "$repo")"
$PROG list --ns prod/web "${S3[@]}" "$repo" | grep -q '^vm/ns/2023-11-14T22:13:20Z ' ||
	fail "a group named ns in a namespace"
$PROG restore "${S3[@]}" "$repo" vm/100 drive-scsi0 "$T/r1.img" ||
	fail "restore"
cmp "$T/src.img" "$T/r1.img" || fail "restore differs"
$PROG verify -q "${S3[@]}" "$repo" vm/100 drive-scsi0 "$T/r1.img" ||
	fail "verify"
$PROG restore "${S3[@]}" --keyfile "$T/key.json" "$repo" vm/101 \
	drive-scsi0 "$T/r2.img" || fail "encrypted restore"
cmp "$T/src.img" "$T/r2.img" || fail "encrypted restore differs"

# Mounts: plain with --verify and fio, then encrypted.
lm_mount "$T/mnt" "${S3[@]}" --target "$T/t1.raw" --verify "$repo" vm/100
fio --name=guest --filename="$T/mnt/drive-scsi0.img" --rw=randrw \
	--bssplit=512/10:4k/50:64k/20:1m/20 --blockalign=512 --offset=8m \
	--size=32m --ioengine=psync --fsync=32 --verify=crc32c \
	--verify_fatal=1 --randseed=5 --verify_state_save=0 \
	--output="$T/fio.txt" || { cat "$T/fio.txt"; fail "fio verify"; }
lm_wait_complete "$T/mnt" 120
[ "$(lm_state "$T/mnt")" = verified ] || fail "state: $(lm_state "$T/mnt")"
lm_umount "$T/mnt"
lm_mount "$T/mnt" "${S3[@]}" --target "$T/t2.raw" --keyfile "$T/key.json" \
	"$repo" vm/101
cmp "$T/src.img" "$T/mnt/drive-scsi0.img" || fail "encrypted mount differs"
lm_wait_complete "$T/mnt" 120
lm_umount "$T/mnt"
cmp "$T/src.img" "$T/t2.raw" || fail "encrypted target differs"

# radosgw stopped mid-stream and started again: the mount completes exact.
lm_mount "$T/mnt" "${S3[@]}" --target "$T/t3.raw" --limit-rate 10M "$repo" \
	vm/100
sleep 1
rgw_stop
sleep 2
rgw_restart
lm_wait_complete "$T/mnt" 120
cmp "$T/src.img" "$T/mnt/drive-scsi0.img" || fail "image after the restart"
lm_umount "$T/mnt"
cmp "$T/src.img" "$T/t3.raw" || fail "target after the restart"

# Listings past 1,000 keys (ListObjectsV2 continuation tokens): 1,100
# snapshots of one group, 1,100 groups.
seq 0 1099 | sed 's|^|store1/.cnt/ct/|; s|$|/2024-01-01T00:00:00Z/index.json.blob|' \
	>"$T/groups"
s3t put-keys pbs-bucket "$T/groups" || fail "seeding groups"
for i in $(seq 0 1099); do
	printf 'store1/.cnt/host/h/%s\n' "$(date -u -d "@$((1600000000 + i * 60))" +%Y-%m-%dT%H:%M:%SZ)"
done >"$T/snaps"
s3t put-keys pbs-bucket "$T/snaps" /index.json.blob || fail "seeding snapshots"
# A snapshot without its manifest does not count.
s3t put pbs-bucket store1/.cnt/host/h/2099-01-01T00:00:00Z/drive.img.fidx
$PROG list "${S3[@]}" "$repo" host/h 2>/dev/null >"$T/list-h"
[ "$(grep -c '^host/h/' "$T/list-h")" = 1100 ] ||
	fail "snapshots past 1,000 keys: $(grep -c '^host/h/' "$T/list-h")"
$PROG list "${S3[@]}" "$repo" 2>/dev/null >"$T/list-all"
[ "$(grep -c '^ct/' "$T/list-all")" = 1100 ] ||
	fail "groups past 1,000 keys: $(grep -c '^ct/' "$T/list-all")"

# What is refused: one line, exit 1.
expect_fail env AWS_SECRET_ACCESS_KEY=wrong $PROG restore "${S3[@]}" "$repo" \
	vm/100 drive-scsi0 "$T/x.img" >/dev/null
assert_one_line_error
assert_err_contains "SignatureDoesNotMatch"
assert_err_contains "$RGW_KEY"
[ -e "$T/x.img" ] && fail "a refused restore wrote its target"
# vm/100's first chunk (plain: its digest is the data's SHA-256).
d=$(head -c 4194304 "$T/src.img" | sha256sum | cut -c1-64)
chunk=store1/.chunks/${d:0:4}/$d
grep -q "^$chunk\$" "$T/keys" || fail "chunk $chunk not in the bucket"
s3t delete pbs-bucket "$chunk"
expect_fail $PROG restore "${S3[@]}" "$repo" vm/100 drive-scsi0 "$T/x.img" \
	>/dev/null
assert_err_contains "pruned and garbage-collected"
assert_err_contains "protect"
echo ok
