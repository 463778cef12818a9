"""bench section: cutover."""
from common import *  # noqa: F401,F403


class QmpConn:
    """One QMP connection to a QEMU monitor socket."""

    def __init__(self, path):
        import socket as sk
        self.s = sk.socket(sk.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self.reply()
        self.call("qmp_capabilities")

    def reply(self):
        while True:
            m = json.loads(self.f.readline())
            if "event" not in m:
                return m

    def call(self, cmd, args=None):
        m = {"execute": cmd}
        if args is not None:
            m["arguments"] = args
        self.f.write(json.dumps(m) + "\n")
        self.f.flush()
        return self.reply()

    def close(self):
        self.s.close()


def cutover():
    print("cutover: a running QEMU moved from a live mount onto its target"
          " (reads through QEMU's block layer, qemu-io from a second"
          " monitor, stand in for the guest's)")
    import random
    import threading
    img = os.path.join(WORK, "cut.img")
    ds = os.path.join(WORK, "ds-cut")
    mnt = os.path.join(WORK, "mnt-cut")
    tgt = os.path.join(WORK, "cut.raw")
    if not os.path.exists(img):
        sh("python3", os.path.join(ROOT, "tests/lib/mkimage.py"), img,
           "256", "31")
    shutil.rmtree(ds, ignore_errors=True)
    sh(PROG, "pack", "-q", "--lazy-chunk-dirs", "--id", "1", "--time",
       "1700000000", img + ":disk", ds)
    took, longest, before, stopped = [], [], [], []
    for _ in range(max(RUNS, 5)):
        lm = LiveMount(ds, "vm/1", mnt, tgt, extra=("--allow-other",))
        disk = lm.wait_file("disk.img")
        lm.wait_complete()
        qa, qb = os.path.join(WORK, "cut-a.qmp"), os.path.join(WORK, "cut-b.qmp")
        for q in (qa, qb):
            if os.path.exists(q):
                os.unlink(q)
        vm = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-nodefaults",
             "-display", "none", "-qmp", f"unix:{qa},server=on,wait=off",
             "-qmp", f"unix:{qb},server=on,wait=off", "-drive",
             f"file={disk},format=raw,if=virtio,cache=none,aio=threads"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(qb):
                time.sleep(0.01)
            mon = QmpConn(qb)
            lat = []
            stop = threading.Event()
            nblk = os.path.getsize(img) // 4096

            def reader():
                while not stop.is_set():
                    off = random.randrange(nblk) * 4096
                    t = time.monotonic()
                    mon.call("human-monitor-command", {
                        "command-line": f'qemu-io virtio0 "read {off} 4k"'})
                    lat.append((t, time.monotonic() - t))

            th = threading.Thread(target=reader)
            th.start()
            time.sleep(1)
            t0 = time.monotonic()
            sh(PROG, "cutover", "-q", "--qmp", qa, mnt)
            t1 = time.monotonic()
            time.sleep(0.5)
            stop.set()
            th.join()
            status = mon.call("query-status")["return"]["status"]
            mon.close()
            lm.proc.wait(timeout=30)
            took.append((t1 - t0) * 1000)
            pre = sorted(d for t, d in lat if t + d < t0)
            before.append(pre[int(len(pre) * 0.99) - 1] * 1000)
            longest.append(max(d for t, d in lat if t <= t1 and t + d >= t0)
                           * 1000)
            stopped.append(0 if status == "running" else 1)
        finally:
            vm.kill()
            vm.wait()
            if lm.proc.poll() is None:
                lm.umount()
    base = row("cutover", "p99 read through QEMU before the cut-over", "ms",
               before, higher_better=False)
    row("cutover", "longest read overlapping the cut-over", "ms", longest,
        base, higher_better=False)
    row("cutover", "cutover command, start to QEMU on the target", "ms",
        took, higher_better=False)
    row("cutover", "VM stopped (stop/cont) during the cut-over", "times",
        stopped, higher_better=False)
