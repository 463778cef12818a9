"""bench section: stream."""
from common import *  # noqa: F401,F403


def stream_http():
    print("stream: a live mount streaming the whole image over loopback HTTP"
          " to completion, against curl --parallel-max 16 of the same unique"
          " chunks plus the decode loop over them (MiB/s = image size / time)")
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    ng = Nginx(ds)
    mnt = os.path.join(WORK, "mnt-stream")
    tgt = os.path.join(WORK, "tgt-stream.raw")
    curl_decode = fetch_limit_fn(ds, ng.url, size)
    hwm = []

    def stream():
        rm_target(tgt)
        drop_caches()
        t = time.monotonic()
        m = LiveMount(ng.url, "vm/1", mnt, target=tgt)
        m.wait_file(".status")
        m.wait_complete()
        dt = time.monotonic() - t
        hwm.append(m.hwm_kib() / 1024)
        m.umount()
        return size / dt / 2**20
    try:
        base = row("stream", "curl --parallel-max 16 + decode loop", "MiB/s",
                   timed(curl_decode))
        row("stream", "live mount: stream to completion over HTTP", "MiB/s",
            timed(stream), base)
        row("stream", "live mount: peak RSS while streaming (--cache-size"
            " 256M)", "MiB", hwm, higher_better=False)
    finally:
        ng.stop()
        rm_target(tgt)
