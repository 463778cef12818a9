"""bench section: limits."""
from common import *  # noqa: F401,F403


def limits():
    print("limits: restore and stream over loopback HTTP against the"
          " physical limits measured here: writing the raw image into a"
          " fresh file (page cache warm, O_DIRECT as restore writes, fdatasync;"
          " the write limit) and"
          " curl --parallel-max 16 of the unique chunks plus the decode loop"
          " over them (the fetch limit).  MiB/s = image size / time")
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    ng = Nginx(ds)
    out = os.path.join(WORK, "out.img")
    mnt = os.path.join(WORK, "mnt-limits")
    tgt = os.path.join(WORK, "tgt-limits.raw")
    fetch_limit = fetch_limit_fn(ds, ng.url, size)

    def write_limit():
        subprocess.run(["cat", img], stdout=subprocess.DEVNULL)
        if os.path.exists(out):
            os.unlink(out)
        t = time.monotonic()
        sh("dd", f"if={img}", f"of={out}", "bs=4M", "oflag=direct",
           "conv=fdatasync", "status=none")
        dt = time.monotonic() - t
        os.unlink(out)
        return size / dt / 2**20

    def restore():
        drop_caches()
        t = time.monotonic()
        sh(PROG, "restore", "-q", "--connections", "16", ng.url, "vm/1",
           "disk", out)
        dt = time.monotonic() - t
        os.unlink(out)
        return size / dt / 2**20

    def stream():
        rm_target(tgt)
        drop_caches()
        t = time.monotonic()
        m = LiveMount(ng.url, "vm/1", mnt, target=tgt, extra=["--no-trace"])
        m.wait_file(".status")
        m.wait_complete()
        dt = time.monotonic() - t
        m.umount()
        rm_target(tgt)
        return size / dt / 2**20
    try:
        w = row("limits", "write limit: dd oflag=direct to a fresh file",
                "MiB/s", timed(write_limit))
        f = row("limits", "fetch limit: curl --parallel-max 16 + decode loop",
                "MiB/s", timed(fetch_limit))
        low = w if w["median"] <= f["median"] else f
        r = row("limits", "restore over HTTP, 16 connections", "MiB/s",
                timed(restore), [w, f])
        row("limits", "stream to completion over HTTP", "MiB/s",
            timed(stream), [r, low])
    finally:
        ng.stop()
