#!/usr/bin/env python3
"""Dirty pages of a file's page cache, by cachestat(2) (Linux 6.5+).

usage: cachestat.py FILE OFF LEN
Prints "cache N dirty N writeback N" for the pages of [OFF, OFF+LEN);
exits 77 when the kernel has no cachestat (ENOSYS).
"""
import ctypes
import os
import sys

NR_CACHESTAT = 451  # x86_64, arm64 and every architecture since 6.5


class Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class Stat(ctypes.Structure):
    _fields_ = [("nr_cache", ctypes.c_uint64), ("nr_dirty", ctypes.c_uint64),
                ("nr_writeback", ctypes.c_uint64),
                ("nr_evicted", ctypes.c_uint64),
                ("nr_recently_evicted", ctypes.c_uint64)]


def main():
    path, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    r, st = Range(off, n), Stat()
    if libc.syscall(NR_CACHESTAT, fd, ctypes.byref(r), ctypes.byref(st),
                    0) != 0:
        e = ctypes.get_errno()
        if e == 38:
            print("SKIP: cachestat(2) missing (Linux < 6.5)")
            sys.exit(77)
        sys.exit(f"cachestat: {os.strerror(e)}")
    print(f"cache {st.nr_cache} dirty {st.nr_dirty} "
          f"writeback {st.nr_writeback}")


if __name__ == "__main__":
    main()
