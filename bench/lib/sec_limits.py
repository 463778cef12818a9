"""bench section: limits."""
from common import *  # noqa: F401,F403


def limits():
    print("limits: restore and stream to completion over nginx HTTPS and"
          " over the PBS protocol (the PBS double) against the limits"
          " measured here: writing the raw image into a fresh file (page"
          " cache warm, O_DIRECT as restore writes, fdatasync; the write"
          " limit) and curl --parallel-max 16 of the unique chunks over"
          " HTTPS plus the decode loop over them on every core (the fetch"
          " limit), and the three side by side (curl, the decode loop"
          " and dd at once: what a restore does, on the same cores and"
          " disk), and the write limit and all at once again with an"
          " fdatasync every second beside the writes (ckpt_write.py:"
          " a restore commits its state once a second, and syncs the"
          " target first); the adaptive number of requests in flight."
          "  MiB/s = image size / time; client CPU is the restore's or the"
          " mount's (both processes) user + system time")
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    gib = size / 2**30
    ng = Nginx(ds, tls=True)
    pbs = PbsServer(ds)
    out = os.path.join(WORK, "out.img")
    mnt = os.path.join(WORK, "mnt-limits")
    tgt = os.path.join(WORK, "tgt-limits.raw")
    fetch_limit = fetch_limit_fn(ds, ng.url, size)
    together, together_done = together_limit_fn(ds, ng.url, img, size)
    cpu = {}		# row name -> [(client cpu s, wall s, server cpu s)]

    def write_limit(cmd):
        def run():
            subprocess.run(["cat", img], stdout=subprocess.DEVNULL)
            if os.path.exists(out):
                os.unlink(out)
            t = time.monotonic()
            sh(*cmd)
            dt = time.monotonic() - t
            os.unlink(out)
            return size / dt / 2**20
        return run

    def server(repo):
        return ng if repo == ng.url else pbs

    def args(repo):
        if repo == ng.url:
            return ["--fingerprint", ng.fp], None
        return [], pbs.env

    def restore(repo, name):
        def run():
            extra, env = args(repo)
            drop_caches()
            s0 = proc_cpu_s(server(repo).proc.pid)
            t = time.monotonic()
            with ChildCpu() as c:
                sh(PROG, "restore", "-q", *extra, repo, "vm/1", "disk", out,
                   env=env)
            dt = time.monotonic() - t
            cpu.setdefault(name, []).append(
                (c.cpu, dt, proc_cpu_s(server(repo).proc.pid) - s0))
            os.unlink(out)
            return size / dt / 2**20
        return run

    def stream(repo, name):
        def run():
            extra, env = args(repo)
            rm_target(tgt)
            drop_caches()
            s0 = proc_cpu_s(server(repo).proc.pid)
            t = time.monotonic()
            with ChildCpu() as c:
                m = LiveMount(repo, "vm/1", mnt, target=tgt,
                              extra=["--no-trace", *extra], env=env)
                m.wait_file(".status")
                m.wait_complete()
                dt = time.monotonic() - t
                s1 = proc_cpu_s(server(repo).proc.pid)
                m.umount()
            cpu.setdefault(name, []).append((c.cpu, dt, s1 - s0))
            rm_target(tgt)
            return size / dt / 2**20
        return run
    try:
        runs = (("restore over HTTPS", restore, ng.url),
                ("stream to completion over HTTPS", stream, ng.url),
                ("restore over the PBS protocol", restore, pbs.repo),
                ("stream to completion over the PBS protocol", stream,
                 pbs.repo))
        # Interleaved, so that a slower minute of the host (its disk
        # varies by half here) weighs on every measurement alike.
        fns = [("write", write_limit(["dd", f"if={img}", f"of={out}",
                                      "bs=4M", "oflag=direct",
                                      "conv=fdatasync", "status=none"])),
               ("fetch", fetch_limit), ("together", together),
               ("write1", write_limit(ckpt_write_cmd(img, out, 1))),
               ("together1", lambda: together(1))]
        fns += [(name, fn(repo, name)) for name, fn, repo in runs]
        vals = {name: [] for name, _ in fns}
        for _ in range(RUNS):
            for name, fn in fns:
                vals[name].append(fn())
        w = row("limits", "write limit: dd oflag=direct to a fresh file",
                "MiB/s", vals["write"])
        f = row("limits", "fetch limit: curl --parallel-max 16 over HTTPS +"
                " decode loop on every core", "MiB/s", vals["fetch"])
        a = row("limits", "all at once: curl --parallel-max 16 over HTTPS,"
                " the decode loop on every core and dd oflag=direct side by"
                " side", "MiB/s", vals["together"])
        row("limits", "write limit, a commit a second: the same writes"
            " with an fdatasync every second beside them", "MiB/s",
            vals["write1"], w)
        a1 = row("limits", "all at once, a commit a second: the same, the"
                 " writer syncing every second", "MiB/s", vals["together1"],
                 a)
        low = w if w["median"] <= f["median"] else f
        other = f if low is w else w
        got = {}
        for name, _, _ in runs:
            # The PBS rows also against the same over nginx HTTPS.
            https = got.get(name.replace("the PBS protocol", "HTTPS"))
            got[name] = row("limits", name, "MiB/s", vals[name],
                            [low, other, a, a1] +
                            ([https] if https else []))
        for name, _, repo in runs:
            c = cpu[name]
            row("limits", f"client CPU per GiB: {name}", "s/GiB",
                [x[0] / gib for x in c], higher_better=False)
            row("limits", f"client cores used: {name}", "cores",
                [x[0] / x[1] for x in c])
            row("limits", f"server cores used: {name} ("
                f"{'nginx' if repo == ng.url else 'the PBS double, Node'})",
                "cores", [x[2] / x[1] for x in c], higher_better=False)
    finally:
        together_done()
        pbs.stop()
        ng.stop()
        rm_target(tgt)
