"""bench section: boot."""
from common import *  # noqa: F401,F403
from guest import *  # noqa: F401,F403


def boot():
    mib = BOOT_SIZES[-1]
    i = len(BOOT_SIZES) - 1
    guest, ds = boot_disks(BOOT_SIZES)
    snap = f"vm/{900 + i}"
    sz = f"{mib} MiB disk"
    print(f"boot: Debian 12 guest (systemd, sshd) over loopback HTTPS, "
          f"accel {qemu_accel(guest)}: live mount to service-ready (systemd"
          " reached multi-user.target, sshd listening), against restore then"
          " boot, and booting a local copy (the floor).  nginx and the PBS"
          " double run at nice 19: in production the store's server is"
          " another machine")
    ng = Nginx(ds, tls=True, nice=19)
    pbs = PbsServer(ds, nice=19)
    out = os.path.join(WORK, "out-boot.raw")
    try:
        floor = boot_floor("boot", ng, i, mib, RUNS)
        rs, rb, live, live_pbs = [], [], [], []
        for _ in range(RUNS):
            r, b = restore_boot(ng, snap, out)
            rs.append(r)
            rb.append(b)
            live.append(live_boot(ng.url, snap, ["--no-trace",
                                                 "--fingerprint", ng.fp]))
            live_pbs.append(live_boot(pbs.repo, snap, ["--no-trace"],
                                      pbs.env))
        row("boot", f"restore alone, {sz}", "s", rs, higher_better=False)
        rbr = row("boot", f"restore, then boot, {sz}", "s", rb, floor,
                  higher_better=False)
        row("boot", f"live mount to service-ready, {sz}", "s", live,
            [floor, rbr], higher_better=False)
        row("boot", f"live mount to service-ready, {sz}, PBS protocol",
            "s", live_pbs, [floor, rbr], higher_better=False)
    finally:
        pbs.stop()
        ng.stop()
