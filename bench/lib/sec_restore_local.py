"""bench section: restore_local."""
from common import *  # noqa: F401,F403


def restore_local():
    print("restore-local: restore of a mixed image from a local datastore"
          " (MiB/s = image size / time)")
    img = os.path.join(WORK, "mixed.img")
    ds = os.path.join(WORK, "ds")
    if not os.path.exists(img):
        sh("python3", os.path.join(ROOT, "tests/lib/mkimage.py"), img,
           str(SIZE_MIB), "77")
    shutil.rmtree(ds, ignore_errors=True)
    sh(PROG, "pack", "-q", "--id", "1", "--time", "1700000000",
       img + ":disk", ds)
    fidx = os.path.join(ds, "vm/1/2023-11-14T22:13:20Z/disk.img.fidx")
    size = os.path.getsize(img)

    def loop():
        drop_caches()
        b, s = sh(os.path.join(BUILD, "bench/decode-loop"), ds, fidx).stdout.split()
        # image bytes per second of the loop's time: a time ratio
        return size / float(s) / 2**20

    def restore(threads):
        def run():
            out = os.path.join(WORK, "out.img")
            drop_caches()
            t = time.monotonic()
            sh(PROG, "restore", "-q", "--connections", str(threads), ds,
               "vm/1", "disk", out)
            dt = time.monotonic() - t
            os.unlink(out)
            return size / dt / 2**20
        return run

    base = row("restore-local", "decode loop, 1 thread",
               "MiB/s", timed(loop))
    row("restore-local", "restore --connections 16", "MiB/s",
        timed(restore(16)), base)
    row("restore-local", "restore --connections 1", "MiB/s",
        timed(restore(1)), base)
