"""bench section: http."""
from common import *  # noqa: F401,F403


def restore_http():
    print("http: restore over loopback HTTP(S) against curl --parallel of the"
          " same chunk files (MiB/s = image size / time)")
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    paths = unique_chunk_paths(ds)
    out = os.path.join(WORK, "out.img")
    for tls in (False, True):
        ng = Nginx(ds, tls=tls)
        proto = "https" if tls else "http"
        try:
            cfg = os.path.join(WORK, "curl.cfg")
            with open(cfg, "w") as f:
                for p in paths:
                    f.write(f'url = "{ng.url}/{p}"\noutput = "/dev/null"\n')

            def curl():
                t = time.monotonic()
                sh("curl", "-sk", "--parallel", "--parallel-max", "16",
                   "-K", cfg)
                return size / (time.monotonic() - t) / 2**20

            def restore(conns):
                def run():
                    extra = ["--fingerprint", ng.fp] if tls else []
                    t = time.monotonic()
                    sh(PROG, "restore", "-q", "--connections", str(conns),
                       *extra, ng.url, "vm/1", "disk", out)
                    dt = time.monotonic() - t
                    os.unlink(out)
                    return size / dt / 2**20
                return run
            base = row("http", f"curl --parallel-max 16, {proto}", "MiB/s",
                       timed(curl))
            row("http", f"restore --connections 16, {proto}", "MiB/s",
                timed(restore(16)), base)
        finally:
            ng.stop()
    print("http: nginx adds 10 ms per chunk request (latency-bound)")
    ng = Nginx(ds, delay_ms=10)
    try:
        def restore_d(conns):
            def run():
                t = time.monotonic()
                sh(PROG, "restore", "-q", "--connections", str(conns), ng.url,
                   "vm/1", "disk", out)
                dt = time.monotonic() - t
                os.unlink(out)
                return size / dt / 2**20
            return run
        base = row("http-10ms", "restore --connections 1, +10 ms/request",
                   "MiB/s", timed(restore_d(1)))
        row("http-10ms", "restore --connections 16, +10 ms/request", "MiB/s",
            timed(restore_d(16)), base)
    finally:
        ng.stop()
