#!/usr/bin/env python3
"""Write random blocks to an image with fsync after each, and journal them.

usage: crashwriter.py write IMAGE JOURNAL SECONDS SEED
       crashwriter.py resolve IMAGE JOURNAL
       crashwriter.py check EXPECTED IMAGE JOURNAL

write: each write is journaled as "B off len seed" before it is issued and
"D off len seed" once write+fsync returned; so every D line is a write the
file system promised durable.  Stops at SECONDS or at the first error
(the daemon was killed).  Sizes are mixed and often unaligned.
resolve: after a crash and remount, record what the range of the write
that was in flight (B without D) now holds: it was never promised, so any
outcome is legal, but from now on it is what the disk says.
check: replay the journal onto EXPECTED (a copy of the source image, in
order) and compare with IMAGE.  Every completed (D) write must be there.
"""
import os
import random
import sys
import time


def block(off, n, seed):
    return random.Random(f"{off}:{n}:{seed}").randbytes(n)


def write(image, journal, secs, seed):
    rng = random.Random(seed)
    size = os.path.getsize(image)
    end = time.monotonic() + secs
    with open(journal, "a", buffering=1) as j:
        fd = os.open(image, os.O_RDWR)
        try:
            while time.monotonic() < end:
                n = rng.choice([512, 4096, 3000, 65536, 1 << 20, 17])
                off = rng.randrange(0, size - n)
                s = rng.getrandbits(32)
                j.write(f"B {off} {n} {s}\n")
                os.fsync(j.fileno())
                os.pwrite(fd, block(off, n, s), off)
                os.fsync(fd)
                j.write(f"D {off} {n} {s}\n")
                os.fsync(j.fileno())
        except OSError:
            pass
        finally:
            try:
                os.close(fd)
            except OSError:
                pass


def resolve(image, journal):
    lines = open(journal).read().split("\n")
    lines = [l for l in lines if l]
    if not lines or not lines[-1].startswith("B "):
        return
    _, off, n, _ = lines[-1].split()
    off, n = int(off), int(n)
    fd = os.open(image, os.O_RDONLY)
    data = os.pread(fd, n, off)
    os.close(fd)
    side = f"{journal}.{len(lines)}"
    with open(side, "wb") as f:
        f.write(data)
    with open(journal, "a") as j:
        j.write(f"A {off} {n} {side}\n")


def check(expected, image, journal):
    exp = bytearray(open(expected, "rb").read())
    got = open(image, "rb").read()
    for line in open(journal):
        kind, off, n, s = line.split()
        off, n = int(off), int(n)
        if kind == "D":
            exp[off:off + n] = block(off, n, int(s))
        elif kind == "A":
            exp[off:off + n] = open(s, "rb").read()
    if bytes(exp) != got:
        bad = next(i for i in range(len(got)) if got[i] != exp[i])
        print(f"mismatch at offset {bad}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {sum(1 for l in open(journal) if l[0] == 'D')} durable writes intact")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "resolve":
        resolve(sys.argv[2], sys.argv[3])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4])
