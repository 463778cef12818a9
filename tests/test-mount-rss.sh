#!/bin/bash
# Bounded memory: streaming a 4 GiB image keeps the daemon's peak RSS
# within --cache-size + 64 MiB.
source "$(dirname "$0")/lib/functions.sh"
requires_fuse
# Sanitizers add shadow memory and quarantines: no RSS bound holds there.
[ -z "${SANITIZE:-}" ] || skip "RSS bound not meaningful under SANITIZE=$SANITIZE"
# 1024 distinct 4 MiB chunks, cheap to make: 64 KiB of noise repeated.
python3 - "$T/big.img" <<'PY'
import random, sys
rng = random.Random(5)
with open(sys.argv[1], "wb") as f:
    for i in range(1024):
        f.write(rng.randbytes(65536) * 64)
PY
$PROG pack --lazy-chunk-dirs -q --id 44 "$T/big.img:disk" "$T/ds"
rm "$T/big.img"
lm_mount "$T/mnt" --target "$T/tgt.raw" --cache-size 64M --connections 16 \
	"$T/ds" vm/44
# Guest reads at the same time, spread over the disk.
for off in 0 1000 2000 3000 4000; do
	dd if="$T/mnt/disk.img" of=/dev/null bs=1M skip=$off count=32 status=none
done
lm_wait_complete "$T/mnt" 600
hwm=$(awk '/VmHWM/ {print $2}' /proc/$(lm_server_pid "$T/mnt")/status)
note "peak RSS $((hwm / 1024)) MiB"
lm_umount "$T/mnt"
[ "$hwm" -le $(((64 + 64) * 1024)) ] || fail "peak RSS $((hwm / 1024)) MiB > 128 MiB"
$PROG verify -q "$T/ds" vm/44 disk "$T/tgt.raw"
echo ok
