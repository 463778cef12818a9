"""bench section: wan."""
from common import *  # noqa: F401,F403
from guest import *  # noqa: F401,F403


def wan():
    guest, ds = boot_disks(BOOT_SIZES)
    print(f"wan: the Debian guest over shaped links, accel "
          f"{qemu_accel(guest)}: nginx (HTTPS, nice 19) delays every request"
          " by the round-trip time (Lua), tc tbf on lo limits the rate.  Per"
          " disk: booting a local copy; per link: live mount to service-"
          "ready without a boot trace (that mount records one) and with"
          " it; restore then boot at 25 ms (a restore is rate-bound: 16"
          f" requests in flight).  {WAN_RUNS} run(s) each")
    tdir = os.path.join(WORK, "wan-traces")
    out = os.path.join(WORK, "out-boot.raw")
    for rate in ("1gbit", "100mbit"):
        for delay in (5, 25):
            link = f"{delay} ms, {rate.replace('bit', 'bit/s')}"
            ng = Nginx(ds, tls=True, nice=19, delay_ms=delay,
                       delay_all=True)
            try:
                for i, mib in enumerate(BOOT_SIZES):
                    # floors on the unshaped link, before tc
                    boot_floor("wan", ng, i, mib, WAN_RUNS)
                with ShapedLoopback(rate):
                    for i, mib in enumerate(BOOT_SIZES):
                        snap = f"vm/{900 + i}"
                        sz = f"{mib} MiB disk"
                        floor = FLOORS[mib]
                        cold, warm, rb = [], [], []
                        for _ in range(WAN_RUNS):
                            shutil.rmtree(tdir, ignore_errors=True)
                            tf = os.path.join(tdir, f"{mib}.trace")
                            x = ["--fingerprint", ng.fp,
                                 "--prefetch-trace", tf]
                            cold.append(live_boot(ng.url, snap, x))
                            warm.append(live_boot(ng.url, snap, x))
                            if delay == 25:
                                rb.append(restore_boot(ng, snap, out)[1])
                        base = [floor]
                        if rb:
                            base.append(row(
                                "wan", f"restore, then boot, {sz}, {link}",
                                "s", rb, floor, higher_better=False))
                        row("wan", f"live mount, no trace, {sz}, {link}",
                            "s", cold, base, higher_better=False)
                        row("wan", f"live mount, boot trace, {sz}, {link}",
                            "s", warm, base, higher_better=False)
            except RuntimeError as e:
                print(f"  skipped: {e}")
            finally:
                ng.stop()
