"""bench section: cold."""
from common import *  # noqa: F401,F403


class Peer:
    """The peer pipeline on the raw image: nbdfuse exposing nbdkit's curl
    plugin under the cow and cache filters (cache-on-read) as a file."""

    def __init__(self, url, mnt):
        self.mnt = mnt
        os.makedirs(mnt, exist_ok=True)
        self.proc = subprocess.Popen(
            ["nbdfuse", os.path.join(mnt, "disk.img"), "--command", "nbdkit",
             "-s", "--exit-with-parent", "--filter=cow", "--filter=cache",
             "curl", url, "cache-on-read=true"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    wait_file = LiveMount.wait_file

    def hwm_kib(self):
        """nbdfuse and the nbdkit it started."""
        pids = [self.proc.pid]
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
        return sum(vm_hwm_kib(p) for p in pids)

    def umount(self):
        subprocess.run(["fusermount3", "-u", self.mnt])
        self.proc.wait()


def cold():
    print("cold: nothing local yet.  A fresh --no-stream mount of the store"
          " over loopback HTTP, against the peer (nbdkit curl + cow + cache,"
          " nbdfuse) on the raw image from the same nginx, and native reads"
          " of the image file with the page cache dropped")
    for tool in ("nbdkit", "nbdfuse"):
        if not shutil.which(tool):
            print(f"  skipped: {tool} not installed (scripts/install-deps"
                  " --bench)")
            return
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    ng = Nginx(WORK)
    mnt = os.path.join(WORK, "mnt-cold")
    tgt = os.path.join(WORK, "tgt-cold.raw")
    peer_mnt = os.path.join(WORK, "nbd")
    wfile = os.path.join(WORK, "native-w.raw")

    def ours(*extra):
        m = LiveMount(ng.url + "/ds", "vm/1", mnt, target=tgt,
                      extra=["--no-stream", *extra])
        return m, m.wait_file("disk.img")

    def ours_small():
        return ours("--cache-size", "32M")

    def peer():
        p = Peer(ng.url + "/mixed.img", peer_mnt)
        return p, p.wait_file("disk.img")

    def native():
        return None, img

    def fio_on(start, args, kind, metric, hwm=None):
        def run():
            rm_target(tgt)
            drop_caches()
            m, path = start()
            try:
                j = fio_json([f"--filename={path}", "--name=c",
                              "--ioengine=psync", "--direct=1",
                              f"--size={size}", *args])
                if hwm is not None and m:
                    hwm.append(m.hwm_kib() / 1024)
            finally:
                if m:
                    m.umount()
            v = j[kind][metric]
            return v / 1024 if metric == "bw" else v
        return run

    def ttfb(start):
        def run():
            rm_target(tgt)
            drop_caches()
            t = time.monotonic()
            m, path = start()
            fd = os.open(path, os.O_RDONLY)
            try:
                if len(os.pread(fd, 4096, 0)) != 4096:
                    raise RuntimeError(f"{path}: short first read")
                dt = time.monotonic() - t
            finally:
                os.close(fd)
                if m:
                    m.umount()
            return dt * 1000
        return run

    def curl_ttfb():
        drop_caches()
        t = time.monotonic()
        sh("curl", "-s", "-r", "0-4095", "-o", "/dev/null",
           ng.url + "/mixed.img")
        return (time.monotonic() - t) * 1000

    try:
        hwm = {"ours": [], "peer": [], "small": []}
        bases = {}
        for name, args, kind, metric in (
                ("seq read 1M", ["--rw=read", "--bs=1m"], "read", "bw"),
                ("rand read 4K, 10 s", ["--rw=randread", "--bs=4k",
                                        "--runtime=10", "--time_based"],
                 "read", "iops")):
            unit = "MiB/s" if metric == "bw" else "IOPS"
            nb = row("cold", f"native image file: {name}", unit,
                     timed(fio_on(native, args, kind, metric)))
            pb = row("cold", f"peer (nbdkit): {name}", unit,
                     timed(fio_on(peer, args, kind, metric, hwm["peer"])),
                     nb)
            row("cold", f"live mount: {name}", unit,
                timed(fio_on(ours, args, kind, metric, hwm["ours"])),
                [nb, pb])
            bases[name] = [nb, pb]
        row("cold", "live mount --cache-size 32M: seq read 1M", "MiB/s",
            timed(fio_on(ours_small, ["--rw=read", "--bs=1m"], "read", "bw",
                         hwm["small"])), bases["seq read 1M"])
        sh("fallocate", "-l", str(size), wfile)
        args = ["--rw=randwrite", "--bs=4k", "--runtime=5", "--time_based"]
        nb = row("cold", "native file: rand write 4K", "IOPS",
                 timed(fio_on(lambda: (None, wfile), args, "write", "iops")))
        pb = row("cold", "peer (nbdkit): rand write 4K", "IOPS",
                 timed(fio_on(peer, args, "write", "iops")), nb)
        row("cold", "live mount: rand write 4K", "IOPS",
            timed(fio_on(ours, args, "write", "iops")), [nb, pb])
        cb = row("cold", "curl -r 0-4095: time to first 4 KiB", "ms",
                 timed(curl_ttfb), higher_better=False)
        pb = row("cold", "peer (nbdkit): start to first 4 KiB read", "ms",
                 timed(ttfb(peer)), cb, higher_better=False)
        row("cold", "live mount: start to first 4 KiB read", "ms",
            timed(ttfb(ours)), [cb, pb], higher_better=False)
        pb = row("cold", "peer (nbdkit+nbdfuse): peak RSS over the read jobs",
                 "MiB", hwm["peer"], higher_better=False)
        row("cold", "live mount: peak RSS over the read jobs (--cache-size"
            " 256M)", "MiB", hwm["ours"], pb, higher_better=False)
        row("cold", "live mount --cache-size 32M: peak RSS, seq read", "MiB",
            hwm["small"], pb, higher_better=False)
    finally:
        ng.stop()
        rm_target(tgt)
        if os.path.exists(wfile):
            os.unlink(wfile)
