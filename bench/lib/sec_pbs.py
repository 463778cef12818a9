"""bench section: pbs."""
from common import *  # noqa: F401,F403


def pbs_protocol():
    print("pbs: the same datastore through the PBS reader protocol (the PBS"
          " double, Node) against nginx over HTTPS (MiB/s = image size /"
          " time)")
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    out = os.path.join(WORK, "out.img")
    mnt = os.path.join(WORK, "mnt-pbs")
    tgt = os.path.join(WORK, "tgt-pbs.raw")
    ng = Nginx(ds, tls=True)
    pbs = PbsServer(ds)

    def restore(repo, env, extra=(), conns=16):
        def run():
            drop_caches()
            t = time.monotonic()
            sh(PROG, "restore", "-q", "--connections", str(conns), *extra,
               repo, "vm/1", "disk", out, env=env)
            dt = time.monotonic() - t
            os.unlink(out)
            return size / dt / 2**20
        return run

    def stream(repo, env, extra=()):
        def run():
            rm_target(tgt)
            drop_caches()
            t = time.monotonic()
            m = LiveMount(repo, "vm/1", mnt, target=tgt, extra=extra, env=env)
            m.wait_file(".status")
            m.wait_complete()
            dt = time.monotonic() - t
            m.umount()
            return size / dt / 2**20
        return run
    try:
        fp = ["--fingerprint", ng.fp]
        b = row("pbs", "restore over nginx HTTPS, 16 connections", "MiB/s",
                timed(restore(ng.url, None, fp)))
        row("pbs", "restore over the PBS protocol, 16 streams", "MiB/s",
            timed(restore(pbs.repo, pbs.env)), b)
        b = row("pbs", "stream to completion over nginx HTTPS", "MiB/s",
                timed(stream(ng.url, None, fp)))
        row("pbs", "stream to completion over the PBS protocol", "MiB/s",
            timed(stream(pbs.repo, pbs.env)), b)
        print("pbs-10ms: the PBS double delays every request by 10 ms")
        pbs.fault("delay 10")
        b = row("pbs-10ms", "restore over PBS, 1 stream (as the PVE streamer"
                " and proxmox-backup-client map)", "MiB/s",
                timed(restore(pbs.repo, pbs.env, conns=1)))
        row("pbs-10ms", "restore over PBS, 16 streams", "MiB/s",
            timed(restore(pbs.repo, pbs.env, conns=16)), b)
    finally:
        pbs.stop()
        ng.stop()
        rm_target(tgt)
