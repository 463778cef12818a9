#!/usr/bin/env python3
"""A guest against a model: random I/O on a mounted image, checked byte
for byte, across kill -9 of the daemon.

usage: guestmodel.py run IMAGE MODEL JOURNAL SECONDS SEED [MIX]
       guestmodel.py resolve IMAGE MODEL JOURNAL
       guestmodel.py compare IMAGE MODEL

MODEL is a plain file holding what IMAGE must read as when the round
starts (first round: a copy of the backup's source image).

run: random operations, most of them unaligned: writes (W), discards
(P, fallocate PUNCH_HOLE|KEEP_SIZE), zero ranges (Z, FALLOC_FL_ZERO_RANGE),
fsync (S), read checks against the model (R, exact: a mismatch exits 3),
and page cache drops (F, POSIX_FADV_DONTNEED, then a read check).  Each
operation is journaled "B op" before it is issued and "D op" once it
returned.  An OSError (the daemon was killed) ends the run quietly, but
with GM_NO_ERRORS=1 (a takeover must go unnoticed) it fails (exit 4);
a run that reaches SECONDS fsyncs, writes the model and empties the
journal.
MIX: letters from WPZSRF, repeated to weight them (default WWWWPZSRRF).

resolve: after kill -9 and a remount, check what IMAGE holds.  Every
operation that returned must be there, synced or not: an acknowledged
write outlives the daemon (the guest journal), as it would a disk's
controller.  A block touched by the one in flight may be old or new
(torn per --block-size); anything else is a lost write or garbage
(exit 1).  Blocks nothing touched must equal the model.  Then MODEL
becomes what IMAGE holds and the journal is emptied.  GM_SYNCED_ONLY=1
checks the weaker promise of a power loss: operations after the last
fsync may be lost, each block holding the result of some prefix of
them.

compare: IMAGE equals MODEL, read through the page cache, then again
after dropping it.
"""
import ctypes
import errno
import os
import random
import sys
import time

# The mount's --block-size: unsynced changes survive a crash per block.
BLOCK = int(os.environ.get("BLOCK_SIZE", "4096"))
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong,
                           ctypes.c_longlong]


def fallocate(fd, mode, off, n):
    if libc.fallocate(fd, mode, off, n) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def data(off, n, seed):
    return random.Random(f"{off}:{n}:{seed}").randbytes(n)


def parse(line):
    w = line.split()
    return (w[0], w[1], *[int(x) for x in w[2:]])


def apply(buf, op):
    """Apply a W/P/Z operation to a bytearray standing for the image."""
    kind = op[0]
    if kind == "W":
        _, off, n, seed = op
        buf[off:off + n] = data(off, n, seed)
    elif kind in "PZ":
        _, off, n = op
        end = min(off + n, len(buf))
        buf[off:end] = bytes(end - off)


def op_range(op, size):
    if op[0] in "WPZ":
        return op[1], min(op[1] + op[2], size)
    return None


def choose(rng, size, mix):
    kind = rng.choice(mix)
    if kind in "WPZ":
        n = rng.choice([1, 17, 511, 512, 1000, 3000, 4096, 4097, 10000,
                        65536, 200000, 1 << 20])
        if rng.random() < 0.3:
            off = rng.randrange(0, size // 512) * 512
        else:
            off = rng.randrange(0, size - 1)
        n = min(n, size - off)
        if kind == "W":
            return ("W", off, n, rng.getrandbits(32))
        return (kind, off, n)
    if kind == "R":
        n = rng.choice([1, 4096, 5000, 1 << 20])
        off = rng.randrange(0, size - n)
        return ("R", off, n)
    return (kind,)


def fmt(op):
    return " ".join(str(x) for x in op)


def run(image, model, journal, secs, seed, mix="WWWWPZSRRF"):
    rng = random.Random(seed)
    cur = bytearray(open(model, "rb").read())
    size = len(cur)
    end = time.monotonic() + secs
    try:
        fd = os.open(image, os.O_RDWR)
    except OSError:
        return  # the daemon is already gone
    with open(journal, "a") as j:
        def log(tag, op):
            j.write(f"{tag} {fmt(op)}\n")
            j.flush()
            os.fsync(j.fileno())

        history = []
        op = None

        def check(off, n, what):
            got = os.pread(fd, n, off)
            if len(got) < n:
                # A short read is legal once (QEMU reads on); the rest
                # must then read or fail loudly.
                try:
                    more = os.pread(fd, n - len(got), off + len(got))
                except OSError as e:
                    if (e.errno in (errno.ENOTCONN, errno.ECONNABORTED) and
                            os.environ.get("GM_NO_ERRORS") != "1"):
                        raise  # the daemon was killed: the round ends
                    print(f"{what}: read at {off}+{n} returned "
                          f"{len(got)} bytes, then: {e}", file=sys.stderr)
                    sys.exit(3)
                print(f"note: short read at {off}+{n}: {len(got)} bytes, "
                      f"then {len(more)}", file=sys.stderr)
                got += more
            if got != bytes(cur[off:off + n]):
                bad = next((i for i in range(len(got))
                            if got[i] != cur[off + i]), len(got))
                print(f"{what}: read at {off}+{n} differs from the model at "
                      f"offset {off + bad} (read {len(got)} bytes, file size "
                      f"{os.fstat(fd).st_size})", file=sys.stderr)
                at = off + bad
                for k, h in enumerate(history):
                    if h[0] in "WPZ" and h[1] <= at < h[1] + h[2]:
                        print(f"  op {k}: {fmt(h)}", file=sys.stderr)
                blk = at // BLOCK * BLOCK
                seg = got[blk - off:blk - off + BLOCK] if blk >= off else b""
                print(f"  got zero block: {seg == bytes(len(seg))}; "
                      f"model zero: {cur[blk:blk + BLOCK] == bytes(BLOCK)}"
                      f"; src equal: "
                      f"{seg == open(model, 'rb').read()[blk:blk + len(seg)]}",
                      file=sys.stderr)
                sys.exit(3)

        try:
            while time.monotonic() < end:
                op = choose(rng, size, mix)
                log("B", op)
                kind = op[0]
                if kind == "W":
                    k = os.pwrite(fd, data(op[1], op[2], op[3]), op[1])
                    if k != op[2]:
                        # A short write: the connection died between the
                        # kernel's requests.  Only a prefix is acknowledged
                        # and the rest may have reached the daemon: the
                        # write stays in flight (each block old or new),
                        # and the guest stops as on an error.
                        raise OSError(errno.EIO, f"short write: {k} of "
                                      f"{op[2]} bytes")
                elif kind == "P":
                    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              op[1], op[2])
                elif kind == "Z":
                    fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                              op[1], op[2])
                elif kind == "S":
                    os.fsync(fd)
                elif kind == "R":
                    check(op[1], op[2], "read")
                elif kind == "F":
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    o = rng.randrange(0, size - 65536)
                    check(o, 65536, "read after dropping the page cache")
                apply(cur, op)
                history.append(op)
                log("D", op)
            # Done in time: one last fsync makes everything durable, and
            # the model and journal start afresh from here.
            os.fsync(fd)
            with open(model, "wb") as f:
                f.write(cur)
            j.truncate(0)
        except OSError as e:
            if os.environ.get("GM_NO_ERRORS") == "1":
                print(f"the guest saw an error: {e} (after {len(history)} "
                      f"operations; in {fmt(op) if op else 'none yet'})",
                      file=sys.stderr)
                sys.exit(4)
        finally:
            try:
                os.close(fd)
            except OSError:
                pass


def apply_block(blk, s, op):
    """Apply operation @op to the bytes @blk of the image at offset @s."""
    e = s + len(blk)
    a, b = op[1], op[1] + op[2]
    lo, hi = max(a, s), min(b, e)
    if lo >= hi:
        return blk
    out = bytearray(blk)
    if op[0] == "W":
        out[lo - s:hi - s] = data(op[1], op[2], op[3])[lo - a:hi - a]
    else:
        out[lo - s:hi - s] = bytes(hi - lo)
    return bytes(out)


def explain(entries, s, e, base, got):
    """Say which journaled operations touched [s, e), for the log."""
    for k, ent in enumerate(entries):
        op = ent[1:]
        if op[0] == "S" or (op[0] in "WPZ" and op[1] < e and
                            op[1] + op[2] > s):
            print(f"  journal line {k + 1}: {fmt(ent)}", file=sys.stderr)
    diff = [i for i in range(e - s) if got[s + i] != base[s + i]]
    print(f"  {len(diff)} bytes differ, first at +{diff[0] if diff else 0}"
          f", last at +{diff[-1] if diff else 0}; zero now: "
          f"{all(b == 0 for b in got[s:e])}", file=sys.stderr)


def resolve(image, model, journal):
    base = bytearray(open(model, "rb").read())
    size = len(base)
    entries = [parse(l) for l in open(journal) if l.strip()]
    # Completed operations, then the one in flight (B without D), if any.
    done = [e[1:] for e in entries if e[0] == "D"]
    inflight = [entries[-1][1:]] if entries and entries[-1][0] == "B" else []
    last_sync = max((i for i, op in enumerate(done) if op[0] == "S"),
                    default=-1)
    if os.environ.get("GM_SYNCED_ONLY") != "1":
        last_sync = len(done) - 1
    for op in done[:last_sync + 1]:
        apply(base, op)
    pending = [op for op in done[last_sync + 1:] + inflight
               if op[0] in "WPZ"]
    got = open(image, "rb").read()
    if len(got) != size:
        print(f"image is {len(got)} bytes, model {size}", file=sys.stderr)
        sys.exit(1)
    touched = {}
    for op in pending:
        a, b = op_range(op, size)
        for blk in range(a // BLOCK, (b - 1) // BLOCK + 1):
            touched.setdefault(blk, []).append(op)
    # Untouched blocks: exactly the model.
    for blk in range((size + BLOCK - 1) // BLOCK):
        if blk in touched:
            continue
        s, e = blk * BLOCK, min(size, (blk + 1) * BLOCK)
        if got[s:e] != base[s:e]:
            print(f"block {blk} (offset {s}) changed, yet nothing unsynced "
                  f"touched it", file=sys.stderr)
            explain(entries, s, e, base, got)
            sys.exit(1)
    for blk, bops in sorted(touched.items()):
        s, e = blk * BLOCK, min(size, (blk + 1) * BLOCK)
        cur = bytes(base[s:e])
        cands = [cur]
        for op in bops:
            cur = apply_block(cur, s, op)
            cands.append(cur)
        if got[s:e] not in cands:
            print(f"block {blk} (offset {s}) holds neither its synced "
                  f"content nor the result of any unsynced prefix of "
                  f"{len(bops)} operations", file=sys.stderr)
            explain(entries, s, e, base, got)
            sys.exit(1)
    with open(model, "wb") as f:
        f.write(got)
    open(journal, "w").close()
    print(f"ok: {last_sync + 1} operations intact, {len(pending)} "
          f"in flight or unsynced resolved")


def compare(image, model):
    want = open(model, "rb").read()
    for what in ("through the page cache", "after dropping the page cache"):
        fd = os.open(image, os.O_RDONLY)
        if what.startswith("after"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        got = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        os.close(fd)
        if got != want:
            bad = next((i for i in range(min(len(got), len(want)))
                        if got[i] != want[i]), min(len(got), len(want)))
            print(f"{image} differs from the model at offset {bad} ({what})",
                  file=sys.stderr)
            sys.exit(1)
    print("ok: identical")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]),
            int(sys.argv[6]), *(sys.argv[7:8]))
    elif cmd == "resolve":
        resolve(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
