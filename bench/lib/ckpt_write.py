"""The write limit of a restore that keeps its promise: copy SRC into a
fresh file DST in 4 MiB O_DIRECT writes, as restore and the stream write,
with an fdatasync of DST once every PERIOD seconds beside the writes
(DESIGN.md: the state is committed at least once a second, and a commit
first makes the target's data durable) and one at the end.  dd
oflag=direct conv=fdatasync flushes once, at the end: on a virtual disk
whose host buffers writes, a flush a second costs what dd never pays.

usage: python3 ckpt_write.py SRC DST PERIOD
"""
import mmap
import os
import sys
import threading

BLOCK = 4 << 20


def copy(src, dst, period):
    buf = mmap.mmap(-1, BLOCK)		# page-aligned, as O_DIRECT wants
    done = threading.Event()
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT,
                  0o644)
    try:
        def syncer():
            while not done.wait(period):
                os.fdatasync(dfd)
        t = threading.Thread(target=syncer)
        t.start()
        try:
            off = 0
            while True:
                n = os.preadv(sfd, [buf], off)
                if n <= 0:
                    break
                # The tail is written whole: O_DIRECT wants whole blocks.
                os.pwritev(dfd, [memoryview(buf)[:(n + 4095) & ~4095]], off)
                off += n
        finally:
            done.set()
            t.join()
        os.ftruncate(dfd, off)
        os.fdatasync(dfd)
    finally:
        os.close(sfd)
        os.close(dfd)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    copy(sys.argv[1], sys.argv[2], float(sys.argv[3]))
