"""The Debian guest the boot sections start: building its disks, booting
it under QEMU (KVM when it works, else TCG) to service-ready, and the
floor of each disk (booting a local copy)."""
from common import *  # noqa: F401,F403

ACCEL = None


def qemu_boot(disk, tag, timeout=900):
    """Boot DISK (raw, virtio, cache=writeback) with a second disk holding
    a token; return time.monotonic() when the guest printed its console
    line with that token (then let it power off)."""
    d = os.path.join(WORK, "qemu")
    os.makedirs(d, exist_ok=True)
    tok = f"{tag}{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
    tokf, log, err = (os.path.join(d, n) for n in ("tok.raw", "console.log",
                                                   "qemu.err"))
    with open(tokf, "wb") as f:
        f.write(tok.encode().ljust(1 << 20, b"\0"))
    open(log, "w").close()
    want = f"LIVEMOUNT-GUEST-OK token={tok}".encode()
    with open(err, "w") as ef:
        p = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", ACCEL or "tcg", "-m", "512",
             "-nodefaults", "-display", "none", "-no-reboot",
             "-serial", f"file:{log}",
             "-drive", f"file={disk},format=raw,if=virtio,cache=writeback,"
             "aio=threads",
             "-drive", f"file={tokf},format=raw,if=virtio"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef)
    end = time.monotonic() + timeout
    try:
        while True:
            with open(log, "rb") as f:
                if want in f.read():
                    t = time.monotonic()
                    break
            why = open(err).read()
            if p.poll() is not None or "error" in why.lower():
                raise RuntimeError(f"qemu ({disk}): no console line: {why}")
            if time.monotonic() > end:
                raise RuntimeError(f"qemu ({disk}): timed out")
            time.sleep(0.02)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return t


def qemu_accel(img):
    """KVM only if a probe boot works: on some hosts /dev/kvm opens but
    guest entry fails."""
    global ACCEL
    if ACCEL is None:
        ACCEL = "tcg"
        if os.access("/dev/kvm", os.W_OK):
            probe = os.path.join(WORK, "probe.img")
            sh("cp", "--sparse=always", img, probe)
            ACCEL = "kvm"
            try:
                qemu_boot(probe, "probe", timeout=60)
            except RuntimeError:
                ACCEL = "tcg"
            os.unlink(probe)
    return ACCEL


def boot_disks(sizes):
    """The Debian guest (tests/guest/build-debian.sh) grown to each size
    in MiB with mixed filler data after its partition, packed as
    vm/<900+i> into one store."""
    guest = sh(os.path.join(ROOT, "tests/guest/build-debian.sh"),
               "--cached").stdout.strip().splitlines()[-1]
    gsize = os.path.getsize(guest)
    ds = os.path.join(WORK, "ds-boot")
    stamp = f"{os.path.basename(guest)} {sizes}\n"
    sf = os.path.join(ds, "stamp")
    if not os.path.exists(sf) or open(sf).read() != stamp:
        shutil.rmtree(ds, ignore_errors=True)
        for i, mib in enumerate(sizes):
            disk = os.path.join(WORK, "boot.img")
            shutil.copyfile(guest, disk)
            if mib << 20 > gsize:
                fill = disk + ".fill"
                sh("python3", os.path.join(ROOT, "tests/lib/mkimage.py"),
                   fill, f"B:{(mib << 20) - gsize}", str(91 + i))
                with open(disk, "ab") as out, open(fill, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
                os.unlink(fill)
            sh(PROG, "pack", "-q", "--id", str(900 + i), "--time",
               "1700000000", disk + ":drive-virtio0", ds)
            os.unlink(disk)
        open(sf, "w").write(stamp)
    return guest, ds


FLOORS = {}     # size MiB -> row: booting a local copy


def boot_floor(section, ng, i, mib, runs):
    """Booting a local copy of disk I (restored first, not timed)."""
    if mib in FLOORS:
        return FLOORS[mib]
    out = os.path.join(WORK, "out-boot.raw")
    vals = []
    for _ in range(runs):
        sh(PROG, "restore", "-q", "--fingerprint", ng.fp, ng.url,
           f"vm/{900 + i}", "drive-virtio0", out)
        drop_caches()
        t = time.monotonic()
        vals.append(qemu_boot(out, "floor") - t)
        os.unlink(out)
    FLOORS[mib] = row(section, f"boot a local copy, {mib} MiB disk", "s",
                      vals, higher_better=False)
    return FLOORS[mib]


def restore_boot(ng, snap, out):
    """Restore, then boot the result: (restore s, restore + boot s)."""
    drop_caches()
    t = time.monotonic()
    sh(PROG, "restore", "-q", "--fingerprint", ng.fp, ng.url, snap,
       "drive-virtio0", out)
    r = time.monotonic() - t
    b = qemu_boot(out, "restore") - t
    os.unlink(out)
    return r, b


def live_boot(url, snap, extra=(), env=None):
    """Fresh target, mount, boot from the mount: seconds to the mark."""
    mnt = os.path.join(WORK, "mnt-boot")
    tgt = os.path.join(WORK, "tgt-boot.raw")
    rm_target(tgt)
    drop_caches()
    t = time.monotonic()
    m = LiveMount(url, snap, mnt, target=tgt, extra=list(extra), env=env)
    try:
        disk = m.wait_file("drive-virtio0.img")
        return qemu_boot(disk, "live") - t
    finally:
        m.umount()
        rm_target(tgt)
