#!/usr/bin/env python3
"""usage: untouched.py SOURCE TARGET IOLOG...
Every byte that no write in the fio iologs touched must equal SOURCE."""
import sys

src = open(sys.argv[1], "rb").read()
tgt = open(sys.argv[2], "rb").read()
if len(src) != len(tgt):
    sys.exit(f"size differs: {len(src)} vs {len(tgt)}")
mask = bytearray(len(src))
writes = 0
for log in sys.argv[3:]:
    for line in open(log):
        f = line.split()
        if len(f) == 5:     # fio iolog v3: time file action offset len
            f = f[1:]
        if len(f) == 4 and f[1] == "write":
            off, n = int(f[2]), int(f[3])
            mask[off:off + n] = b"\1" * n
            writes += 1
if writes == 0:
    sys.exit("no writes in the iolog")
for i in range(0, len(src), 1 << 16):
    if src[i:i + 65536] != tgt[i:i + 65536]:
        for k in range(i, min(i + 65536, len(src))):
            if not mask[k] and src[k] != tgt[k]:
                sys.exit(f"untouched byte {k} differs from the backup")
print(f"ok: {writes} writes, every untouched byte equals the backup")
