#!/usr/bin/env python3
"""Write a deterministic mixed test image, one 4 MiB slot at a time: random
bytes, compressible text, all zeros (a PBS zero chunk), a mix of 1 MiB
pieces, or a repeat of an earlier slot (so dedup has work).
Usage: mkimage.py FILE SIZE_MIB [SEED]; SIZE may be "B:<bytes>"."""
import random
import sys

path, size = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
total = int(size[2:]) if size.startswith("B:") else int(size) << 20
rng = random.Random(seed)
MIB, SLOT = 1 << 20, 4 << 20
WORDS = [b"alpha", b"backup", b"chunk", b"datastore", b"proxmox", b"zstd",
         b"fixed", b"index", b"\n", b"livemount", b"guest"]


def piece(kind, n):
    if kind == "r":
        return rng.randbytes(n)
    if kind == "t":
        d = b" ".join(rng.choice(WORDS) for _ in range(n // 5 + 1))
        return d[:n]
    return bytes(n)


earlier = []
with open(path, "wb") as f:
    done = 0
    while done < total:
        n = min(SLOT, total - done)
        kind = rng.choice("rtzmmd") if earlier else "m"
        if kind == "m":
            data = b"".join(piece(rng.choice("rtz"), MIB) for _ in range(4))[:n]
        elif kind == "d":
            data = rng.choice(earlier)[:n]
        else:
            data = piece(kind, n)
        data += bytes(n - len(data))
        if len(earlier) < 6 and n == SLOT:
            earlier.append(data)
        f.write(data)
        done += n
