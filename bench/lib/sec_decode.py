"""bench section: decode."""
from common import *  # noqa: F401,F403


def decode_encrypted():
    print("decode: single-thread decode loop, encrypted vs plain chunks")
    img = os.path.join(WORK, "mixed.img")
    if not os.path.exists(img):
        sh("python3", os.path.join(ROOT, "tests/lib/mkimage.py"), img,
           str(SIZE_MIB), "77")
    env = dict(os.environ, PBS_ENCRYPTION_PASSWORD="benchmark")
    key = os.path.join(WORK, "key.json")
    if not os.path.exists(key):
        sh(PROG, "key", "create", key, env=env)
    size = os.path.getsize(img)
    figs = {}
    for name, extra in (("plain", []), ("encrypted", ["--keyfile", key])):
        ds = os.path.join(WORK, "ds-" + name)
        shutil.rmtree(ds, ignore_errors=True)
        sh(PROG, "pack", "-q", "--id", "1", "--time", "1700000000", *extra,
           img + ":disk", ds, env=env)
        fidx = os.path.join(ds, "vm/1/2023-11-14T22:13:20Z/disk.img.fidx")
        args = [os.path.join(BUILD, "bench/decode-loop"), ds, fidx]
        if extra:
            args += [key, "benchmark"]

        def run(args=args):
            drop_caches()
            b, t = sh(*args).stdout.split()
            return size / float(t) / 2**20
        figs[name] = timed(run)
    base = row("decode", "decode loop, plain chunks", "MiB/s", figs["plain"])
    row("decode", "decode loop, encrypted chunks", "MiB/s",
        figs["encrypted"], base)
