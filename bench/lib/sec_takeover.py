"""bench section: takeover."""
from common import *  # noqa: F401,F403


def takeover():
    print("takeover: the serving process killed with SIGKILL under a reader"
          " (O_DIRECT 4 KiB reads at random offsets, one at a time); the"
          " guest's wait is from the kill to the end of the first read"
          " begun after it")
    import mmap
    import random
    import threading
    img = os.path.join(WORK, "take.img")
    ds = os.path.join(WORK, "ds-take")
    mnt = os.path.join(WORK, "mnt-take")
    tgt = os.path.join(WORK, "take.raw")
    if not os.path.exists(img):
        sh("python3", os.path.join(ROOT, "tests/lib/mkimage.py"), img,
           "256", "33")
    shutil.rmtree(ds, ignore_errors=True)
    sh(PROG, "pack", "-q", "--lazy-chunk-dirs", "--id", "1", "--time",
       "1700000000", img + ":disk", ds)
    lm = LiveMount(ds, "vm/1", mnt, tgt)
    waits, told, restart, lat = [], [], [], []
    try:
        disk = lm.wait_file("disk.img")
        fd = os.open(disk, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        nblk = os.path.getsize(disk) // 4096
        ends = []
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                t = time.monotonic()
                os.preadv(fd, [buf], random.randrange(nblk) * 4096)
                ends.append((t, time.monotonic()))

        def status():
            return json.load(open(os.path.join(mnt, ".status")))

        def wait_after(t0, old):
            while True:
                done = [e for s0, e in list(ends) if s0 > t0]
                if done:
                    break
                if not th.is_alive() or time.monotonic() > t0 + 30:
                    raise RuntimeError("the mount did not come back")
                time.sleep(0.001)
            while status()["pid"] == old:
                time.sleep(0.01)
            return (done[0] - t0) * 1000

        th = threading.Thread(target=reader)
        th.start()
        time.sleep(1)
        lat = [(e - s0) * 1000 for s0, e in ends]
        for _ in range(20):
            old = status()["pid"]
            t0 = time.monotonic()
            os.kill(old, signal.SIGKILL)
            waits.append(wait_after(t0, old))
            told.append(status()["last_restart"]["guest_wait_ms"])
            # Slower than a crash loop, which the supervisor gives up
            # on (20 deaths within 10 s).
            time.sleep(0.6)
        for _ in range(max(RUNS, 3)):
            old = status()["pid"]
            t0 = time.monotonic()
            sh(PROG, "restart", "-q", mnt)
            t1 = time.monotonic()
            wait_after(t1, old)
            # The guest's longest stall: a read overlapping the hand-over.
            restart.append(max((e - s0) * 1000 for s0, e in list(ends)
                               if s0 <= t1 and e >= t0))
            time.sleep(0.3)
        stop.set()
        th.join()
        os.close(fd)
    finally:
        lm.umount()
    base = row("takeover", "read latency, no takeover", "ms", lat,
               higher_better=False)
    row("takeover", "guest wait across a kill -9 (20 kills)", "ms", waits,
        base, higher_better=False)
    row("takeover", "the same, as the new server logs it", "ms", told,
        base, higher_better=False)
    row("takeover", "longest read across a restart (upgrade in place)",
        "ms", restart, base, higher_better=False)
