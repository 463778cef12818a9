"""bench section: inplace."""
from common import *  # noqa: F401,F403


def inplace():
    mib = int(os.environ.get("BENCH_INPLACE_MIB", "8192"))
    print(f"inplace: a {mib} MiB mixed disk whose old copy differs in 2 % of"
          " its chunks (4 KiB rewritten in each), over HTTPS with 25 ms per"
          " request and tc tbf 100 Mbit/s on lo: time to complete with"
          " --in-place against a fresh target and against a restore; the"
          " check phase's rate against min(sequential read of the old copy,"
          " cores x one core's openssl SHA-256).  Caches dropped first")
    import random
    img = os.path.join(WORK, f"inplace-{mib}.img")
    old = os.path.join(WORK, f"inplace-{mib}.old")
    ds = os.path.join(WORK, "ds-inplace")
    mnt = os.path.join(WORK, "mnt-inplace")
    tgt = os.path.join(WORK, "inplace.raw")
    cs = 4 << 20
    nchunks = (mib << 20) // cs
    changed = max(1, nchunks * 2 // 100)
    if not os.path.exists(old):
        sh("python3", os.path.join(ROOT, "tests/lib/mkimage.py"), img,
           str(mib), "41")
        shutil.rmtree(ds, ignore_errors=True)
        sh(PROG, "pack", "-q", "--lazy-chunk-dirs", "--id", "1", "--time",
           "1700000000", img + ":disk", ds)
        rng = random.Random(7)
        with open(img, "r+b") as f:
            for c in rng.sample(range(nchunks), changed):
                f.seek(c * cs + rng.randrange(cs - 4096))
                f.write(rng.randbytes(4096))
        os.rename(img, old)

    def fresh_old():
        rm_target(tgt)
        sh("cp", "--sparse=always", old, tgt)
        drop_caches()

    # Baselines: the old copy's sequential read, and SHA-256 on every core.
    def seq_read():
        drop_caches()
        t = time.monotonic()
        sh("dd", f"if={old}", "of=/dev/null", "bs=4M", "iflag=direct")
        return mib / (time.monotonic() - t)
    rd = row("inplace", "sequential read of the old copy (dd iflag=direct"
             " bs=4M)", "MiB/s", timed(seq_read))

    def sha_rate():
        out = sh("openssl", "speed", "-seconds", "3", "-bytes", str(cs),
                 "-evp", "sha256").stdout
        kbs = float(out.strip().splitlines()[-1].split()[-1].rstrip("k"))
        return kbs * 1000 / 2**20 * (os.cpu_count() or 1)
    sha = row("inplace", f"SHA-256, {os.cpu_count()} cores x openssl speed"
              " -evp sha256 (4 MiB blocks)", "MiB/s", timed(sha_rate))
    floor = rd if rd["median"] <= sha["median"] else sha

    ng = Nginx(ds, tls=True, nice=19, delay_ms=25, delay_all=True)
    base_args = ["--fingerprint", ng.fp]
    rates, took, fetched = [], [], []
    try:
        with ShapedLoopback("100mbit"):
            def mount_in_place():
                fresh_old()
                t = time.monotonic()
                m = LiveMount(ng.url, "vm/1", mnt, tgt, fresh=False,
                              extra=(*base_args, "--in-place"))
                m.wait_file(".status")
                m.wait_complete()
                dt = time.monotonic() - t
                st = json.load(open(os.path.join(mnt, ".status")))
                d = st["disks"][0]
                rates.append(d["check"]["rate"] / 2**20)
                fetched.append(d["fetched_chunks"])
                m.umount()
                return dt
            took = timed(mount_in_place)
            ip = row("inplace", f"mount --in-place to complete, {mib} MiB,"
                     " 25 ms, 100 Mbit/s", "s", took, higher_better=False)
            row("inplace", f"chunks fetched by it (of {nchunks}; "
                f"{changed} changed)", "chunks", fetched, higher_better=False)

            def restore_in_place():
                fresh_old()
                t = time.monotonic()
                sh(PROG, "restore", "-q", "--in-place", *base_args, ng.url,
                   "vm/1", "disk", tgt)
                return time.monotonic() - t
            rip = row("inplace", "restore --in-place", "s",
                      timed(restore_in_place, 1), higher_better=False)

            def mount_fresh():
                rm_target(tgt)
                t = time.monotonic()
                m = LiveMount(ng.url, "vm/1", mnt, target=tgt,
                              extra=base_args)
                m.wait_file(".status")
                m.wait_complete()
                dt = time.monotonic() - t
                m.umount()
                return dt
            fr = row("inplace", "mount onto a fresh target to complete", "s",
                     timed(mount_fresh, 1), higher_better=False)

            def restore_full():
                rm_target(tgt)
                t = time.monotonic()
                sh(PROG, "restore", "-q", *base_args, ng.url, "vm/1",
                   "disk", tgt)
                return time.monotonic() - t
            rf = row("inplace", "restore onto a fresh target", "s",
                     timed(restore_full, 1), higher_better=False)
            # Ratios the other way round: how many times faster.
            for r, b in ((fr, ip), (rf, ip), (rf, rip)):
                print(f"  {b['name']}: {r['median'] / b['median']:.1f}x"
                      f" faster than {r['name']}")
        row("inplace", "check phase rate (.status check.rate)", "MiB/s",
            rates, floor)
    finally:
        ng.stop()
        rm_target(tgt)
        for f in (tgt + ".partial", tgt + ".restore.lmstate"):
            if os.path.exists(f):
                os.unlink(f)
