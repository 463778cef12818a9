"""bench section: mount."""
from common import *  # noqa: F401,F403


def mount_io():
    print("mount: fio through the live mount against the same jobs on the"
          " native target file")
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    mnt = os.path.join(WORK, "mnt")
    tgt = os.path.join(WORK, "tgt.raw")
    os.makedirs(mnt, exist_ok=True)

    def mount(*extra):
        m = LiveMount(ds, "vm/1", mnt, target=tgt, extra=extra)
        m.wait_file(".status")
        return m

    # Stream completion against restore of the same archive.
    def stream_time():
        rm_target(tgt)
        t = time.monotonic()
        m = mount()
        m.wait_complete()
        dt = time.monotonic() - t
        m.umount()
        return size / dt / 2**20

    def restore_time():
        out = os.path.join(WORK, "out.img")
        t = time.monotonic()
        sh(PROG, "restore", "-q", ds, "vm/1", "disk", out)
        dt = time.monotonic() - t
        os.unlink(out)
        return size / dt / 2**20
    base = row("mount", "restore (local store)", "MiB/s", timed(restore_time))
    row("mount", "stream to completion (local store)", "MiB/s",
        timed(stream_time), base)

    # Present data: fully streamed mount vs the target file itself.
    m = mount()
    m.wait_complete()
    f = os.path.join(mnt, "disk.img")
    jobs = [
        ("seq read 1M", ["--rw=read", "--bs=1m"], "read", "bw"),
        ("rand read 4K", ["--rw=randread", "--bs=4k"], "read", "iops"),
        ("rand write 4K", ["--rw=randwrite", "--bs=4k"], "write", "iops"),
    ]
    for name, args, kind, metric in jobs:
        common = ["--name=b", "--ioengine=psync", "--direct=1",
                  "--size=512m", "--runtime=5", "--time_based", *args]

        def run(path, common=common, kind=kind, metric=metric):
            j = fio_json([f"--filename={path}", *common])
            v = j[kind][metric]
            return v / 1024 if metric == "bw" else v
        unit = "MiB/s" if metric == "bw" else "IOPS"
        base = row("mount", f"native target: {name} (O_DIRECT)", unit,
                   timed(lambda: run(tgt)))
        row("mount", f"through the mount: {name} (O_DIRECT)", unit,
            timed(lambda: run(f)), base)
    m.umount()

    # p99 latency of present reads while the streamer runs vs --no-stream.
    def p99(stream):
        def run():
            m = mount(*([] if stream else ["--no-stream"]))
            # make the first 256 MiB present, then read it while streaming
            sh("dd", f"if={os.path.join(mnt, 'disk.img')}", "of=/dev/null",
               "bs=4M", "count=64")
            j = fio_json([f"--filename={os.path.join(mnt, 'disk.img')}",
                          "--name=l", "--rw=randread", "--bs=4k",
                          "--ioengine=psync", "--direct=1", "--size=256m",
                          "--runtime=3", "--time_based"])
            m.umount()
            return j["read"]["clat_ns"]["percentile"]["99.000000"] / 1000
        return run
    base = row("mount", "p99 read latency of present blocks, --no-stream",
               "us", timed(p99(False)))
    row("mount", "p99 read latency of present blocks, streaming", "us",
        timed(p99(True)), base, higher_better=False)
