"""bench section: scale."""
from common import *  # noqa: F401,F403


def scale():
    print("scale: a 16 TiB snapshot, zero but for 5 x 64 MiB of data, from"
          " nginx over HTTP, target on tmpfs (ext4 files stop short of 16"
          " TiB), against a snapshot of the same 320 MiB of data alone")
    if os.geteuid():
        print("  skipped: needs root (tmpfs)")
        return
    fs = os.path.join(WORK, "scale-fs")
    os.makedirs(fs, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", fs)
    ds = os.path.join(WORK, "ds-scale")
    shutil.rmtree(ds, ignore_errors=True)
    ng = None
    try:
        big = os.path.join(fs, "big.img")
        small = os.path.join(fs, "small.img")
        data = os.path.join(fs, "data")
        with open(big, "wb") as f:
            f.truncate(16 << 40)
        with open(small, "wb") as f:
            f.truncate(5 * (64 << 20))
        for k, off in enumerate((0, 1 << 40, 5 << 40, 11 << 40,
                                 (16 << 40) - (64 << 20))):
            with open(data, "wb") as f:
                f.write(os.urandom(64 << 20))
            for path, o in ((big, off), (small, k * (64 << 20))):
                sh("dd", f"if={data}", f"of={path}", "bs=4M",
                   f"seek={o}", "oflag=seek_bytes", "conv=notrunc",
                   "status=none")
        os.unlink(data)

        def pack(path, id_):
            def run():
                shutil.rmtree(os.path.join(ds, "vm", id_),
                              ignore_errors=True)
                t = time.monotonic()
                sh(PROG, "pack", "-q", "--lazy-chunk-dirs", "--id", id_,
                   "--time", "1700000000", path + ":disk", ds)
                return time.monotonic() - t
            return run
        pb = row("scale", "pack the 320 MiB of data alone", "s",
                 timed(pack(small, "1")), higher_better=False)
        row("scale", "pack the sparse 16 TiB image", "s",
            timed(pack(big, "2")), pb, higher_better=False)
        os.unlink(big)
        os.unlink(small)
        ng = Nginx(ds, log=True)
        log = os.path.join(ng.dir, "access.log")
        mnt = os.path.join(WORK, "mnt-scale")
        tgt = os.path.join(fs, "tgt.raw")
        figs = {}
        for id_ in ("1", "2"):
            up, rss, done, state, reqs = [], [], [], [], []
            for _ in range(RUNS):
                rm_target(tgt)
                open(log, "w").close()
                t = time.monotonic()
                m = LiveMount(ng.url, f"vm/{id_}", mnt, target=tgt,
                              extra=["--no-trace"])
                m.wait_file("disk.img")
                up.append(time.monotonic() - t)
                m.wait_complete()
                done.append(time.monotonic() - t)
                status = open(os.path.join(mnt, ".status")).read()
                rss.append(m.hwm_kib() / 1024)
                m.umount()
                state.append(os.path.getsize(tgt + ".lmstate") / 1024)
                time.sleep(0.2)     # nginx writes its log line after
                reqs.append(sum(1 for line in open(log)
                                if "/.chunks/" in line))
                rm_target(tgt)
            figs[id_] = (up, done, rss, state, reqs, status)
        names = {"1": "320 MiB data alone", "2": "16 TiB snapshot"}
        base = {}
        for id_ in ("1", "2"):
            up, done, rss, state, reqs, status = figs[id_]
            n = names[id_]
            b = base.get("up")
            r = [row("scale", f"mount to image visible, {n}", "s", up,
                     b, higher_better=False),
                 row("scale", f"stream to completion, {n}", "s", done,
                     base.get("done"), higher_better=False),
                 row("scale", f"peak RSS (cache 256 MiB), {n}", "MiB", rss,
                     base.get("rss"), higher_better=False),
                 row("scale", f"state file at completion, {n}", "KiB",
                     state, base.get("state"), higher_better=False),
                 row("scale", f"chunk requests, {n}", "requests", reqs,
                     base.get("reqs"), higher_better=False)]
            if id_ == "1":
                base = dict(zip(("up", "done", "rss", "state", "reqs"), r))
            print(f"  status at completion, {n}: {status.strip()}")
    finally:
        if ng:
            ng.stop()
        subprocess.run(["umount", fs])
        shutil.rmtree(ds, ignore_errors=True)
