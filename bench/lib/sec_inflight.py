"""bench section: inflight (issue: requests in flight chosen by
measurement)."""
from common import *  # noqa: F401,F403

COUNTS = [int(x) for x in os.environ.get("BENCH_INFLIGHT",
                                         "1,4,16,64").split(",")]
DELAYS = [int(x) for x in os.environ.get("BENCH_INFLIGHT_MS",
                                         "0,10,25").split(",")]
# A restore long enough that finding the count is a small part of it,
# as in a restore of a real disk.
MIB = int(os.environ.get("BENCH_INFLIGHT_MIB", "4096"))
# One count's runs spread by 10-25 % here (the host's disk): one round per
# count and place in the order.
INFLIGHT_RUNS = int(os.environ.get("BENCH_INFLIGHT_RUNS",
                                   str(len(COUNTS) + 1)))


def inflight():
    print("inflight: restore over nginx HTTPS with a fixed number of"
          " requests in flight (--connections N) against the adaptive"
          " count (no --connections), nginx adding 0, 10 and 25 ms to"
          f" every chunk request; a {MIB} MiB image.  MiB/s = image size"
          " / time")
    img, ds = packed_mixed(MIB)
    size = os.path.getsize(img)
    out = os.path.join(WORK, "out.img")
    for ms in DELAYS:
        ng = Nginx(ds, tls=True, delay_ms=ms)
        try:
            def restore(conns):
                def run():
                    extra = ["--connections", str(conns)] if conns else []
                    drop_caches()
                    t = time.monotonic()
                    sh(PROG, "restore", "-q", *extra, "--fingerprint",
                       ng.fp, ng.url, "vm/1", "disk", out)
                    dt = time.monotonic() - t
                    os.unlink(out)
                    return size / dt / 2**20
                return run
            # Interleaved, so that a slower minute of the host weighs on
            # every count alike, and the order turned by one each round,
            # so that each count runs once in each place (after a slow
            # one, first after the server started).
            order = COUNTS + [0]
            vals = {c: [] for c in order}
            for r in range(INFLIGHT_RUNS):
                for c in order[r % len(order):] + order[:r % len(order)]:
                    vals[c].append(restore(c)())
            fixed = []
            for c in COUNTS:
                fixed.append(row("inflight", f"+{ms} ms, {c} in flight",
                                 "MiB/s", vals[c]))
            best = max(fixed, key=lambda r: r["median"])
            row("inflight", f"+{ms} ms, adaptive", "MiB/s", vals[0], best)
            # The same, round by round: a round's runs follow each other,
            # so a slower minute of the host weighs on both of a pair; the
            # best of four medians above is biased upwards by their noise.
            bc = COUNTS[fixed.index(best)]
            row("inflight", f"+{ms} ms, adaptive / {bc} in flight, paired"
                " by round", "x", [a / b for a, b in zip(vals[0], vals[bc])])
        finally:
            ng.stop()
