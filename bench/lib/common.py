"""What every benchmark section shares: the configuration (environment
variables, see bench/run), running commands, result rows with their
ratios, and the servers and mounts the sections start."""
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PROG = os.environ.get("PROG", os.path.join(ROOT, "pbs-livemount"))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SIZE_MIB = int(os.environ.get("BENCH_SIZE_MIB", "1024"))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
WORK = os.environ.get("BENCH_WORK", "/var/tmp/pbslm-bench")
WAN_RUNS = int(os.environ.get("BENCH_WAN_RUNS", "1"))
BOOT_SIZES = [int(x) for x in os.environ.get(
    "BENCH_BOOT_SIZES", "2048,8192").split(",") if x]
# Boot traces of the benchmark's own mounts stay in its work directory.
os.environ["PBSLM_TRACE_DIR"] = os.path.join(WORK, "traces")
rows = []


def sh(*args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stderr}")
    return r


def drop_caches():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def timed(fn, runs=RUNS):
    out = []
    for _ in range(runs):
        out.append(fn())
    return out


def row(section, name, unit, values, base=None, higher_better=True):
    """One table row; BASE is a row or a list of rows (first is primary).
    Every ratio is median / baseline median, so for times, latencies and
    memory (higher_better=False) below 1 is better."""
    med = statistics.median(values)
    r = {"section": section, "name": name, "unit": unit, "median": med,
         "min": min(values), "max": max(values), "runs": len(values)}
    bases = [] if base is None else base if isinstance(base, list) else [base]
    vs = []
    for b in bases:
        vs.append({"baseline": b["name"], "ratio": med / b["median"]})
    if vs:
        r["baseline"], r["ratio"] = vs[0]["baseline"], vs[0]["ratio"]
        r["vs"] = vs
    r["higher_better"] = higher_better
    rows.append(r)
    d = 2 if unit == "x" else 1		# a ratio
    print(f"  {name}: {med:.{d}f} {unit}" +
          "".join(f"  ({v['ratio']:.2f}x {v['baseline']})" for v in vs),
          flush=True)
    return r


class Nginx:
    """A private nginx on 127.0.0.1 serving ROOT; optional TLS and delay."""

    def __init__(self, root, tls=False, delay_ms=0, nice=0, delay_all=False,
                 log=False):
        import socket
        self.dir = tempfile.mkdtemp(prefix="bench-nginx.", dir=WORK)
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            self.port = so.getsockname()[1]
        listen = f"listen 127.0.0.1:{self.port};"
        self.url = f"http://127.0.0.1:{self.port}"
        self.fp = None
        if tls:
            sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
               "-subj", "/CN=localhost", "-keyout", f"{self.dir}/key.pem",
               "-out", f"{self.dir}/cert.pem")
            out = sh("openssl", "x509", "-in", f"{self.dir}/cert.pem",
                     "-noout", "-fingerprint", "-sha256").stdout
            self.fp = out.strip().split("=")[1].lower()
            listen = (f"listen 127.0.0.1:{self.port} ssl http2; ssl_certificate "
                      f"{self.dir}/cert.pem; ssl_certificate_key {self.dir}/key.pem;")
            self.url = f"https://127.0.0.1:{self.port}"
        mods, chunks, alls = "", "", ""
        if delay_ms:
            mods = ("load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
                    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;")
            chunks = f"access_by_lua_block {{ ngx.sleep({delay_ms / 1000}) }}"
            if delay_all:
                # a round trip: every request waits, not only chunks
                alls, chunks = chunks, ""
        d = self.dir
        conf = f"""{mods}
daemon off; master_process off; worker_processes 1;
error_log {d}/error.log warn; pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{ access_log {f"{d}/access.log" if log else "off"}; sendfile on;
 keepalive_requests 100000;
 client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
 uwsgi_temp_path {d}/u; scgi_temp_path {d}/s; default_type application/octet-stream;
 http2_max_concurrent_streams 256;
 server {{ {listen} root {root}; location / {{ autoindex on; autoindex_format json; }}
   location /.chunks/ {{ {chunks} }} {alls} }} }}
"""
        open(f"{d}/nginx.conf", "w").write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf", "-p", d],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if nice:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, nice)
        for _ in range(50):
            if subprocess.run(["curl", "-sk", "-o", "/dev/null", self.url + "/"]).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("nginx did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class PbsServer:
    """The PBS double (tests/lib/pbs-server.js, Node) serving ROOT as
    datastore "store1" over HTTPS, an API token in .env."""

    def __init__(self, root, nice=0):
        import socket
        import uuid
        self.dir = tempfile.mkdtemp(prefix="bench-pbs.", dir=WORK)
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            self.port = so.getsockname()[1]
        d = self.dir
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
           "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
           "-subj", "/CN=pbs.bench", "-keyout", f"{d}/key.pem",
           "-out", f"{d}/cert.pem")
        out = sh("openssl", "x509", "-in", f"{d}/cert.pem", "-noout",
                 "-fingerprint", "-sha256").stdout
        self.fp = out.strip().split("=")[1].lower()
        secret = str(uuid.uuid4())
        with open(f"{d}/auth", "w") as f:
            f.write(f"token root@pam!bench {secret}\n")
        self.faults = f"{d}/faults"
        self.fault("off")
        self.repo = f"root@pam!bench@127.0.0.1:{self.port}:store1"
        self.env = dict(os.environ, PBS_PASSWORD=secret,
                        PBS_FINGERPRINT=self.fp)
        self.proc = subprocess.Popen(
            ["node", os.path.join(ROOT, "tests/lib/pbs-server.js"),
             "--port", str(self.port), "--cert", f"{d}/cert.pem", "--key",
             f"{d}/key.pem", "--store", f"store1={root}", "--auth",
             f"{d}/auth", "--faults", self.faults],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        if nice:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, nice)
        for _ in range(100):
            if subprocess.run(["curl", "-sk", "-o", "/dev/null",
                               f"https://127.0.0.1:{self.port}/"]).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("the PBS double did not start")

    def fault(self, mode):
        with open(self.faults, "w") as f:
            f.write(mode + "\n")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class LiveMount:
    """pbs-livemount mount -f in the background, for one measurement."""

    def __init__(self, repo, snap, mnt, target=None, extra=(), env=None,
                 fresh=True):
        self.mnt = mnt
        os.makedirs(mnt, exist_ok=True)
        args = [PROG, "mount", "-f", "-q"]
        if target:
            if fresh:
                rm_target(target)
            args += ["--target", target]
        else:
            args += ["--read-only"]
        self.proc = subprocess.Popen([*args, *extra, repo, snap, mnt],
                                     env=env)

    def wait_file(self, name, timeout=30):
        path = os.path.join(self.mnt, name)
        end = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"mount of {name} did not come up")
            time.sleep(0.005)
        return path

    def state(self):
        return json.load(open(os.path.join(self.mnt, ".status")))["state"]

    def wait_complete(self):
        while self.state() not in ("complete", "verified"):
            time.sleep(0.05)

    def hwm_kib(self):
        # The server's (the process it started is the supervisor).
        pid = json.load(open(os.path.join(self.mnt, ".status")))["pid"]
        return vm_hwm_kib(pid)

    def umount(self):
        subprocess.run(["fusermount3", "-u", self.mnt])
        self.proc.wait()


def rm_target(target):
    """A fresh start; call it before the clock starts: unlinking a large
    fragmented file takes a while."""
    for f in (target, target + ".lmstate", target + ".lmstate.v0",
              target + ".lmstate.v1"):
        if os.path.exists(f):
            os.unlink(f)


def vm_hwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def packed_mixed(size_mib=None):
    """The mixed image (random, text, zeros) of @size_mib (SIZE_MIB) and
    its datastore."""
    sfx = f"-{size_mib}" if size_mib and size_mib != SIZE_MIB else ""
    img = os.path.join(WORK, f"mixed{sfx}.img")
    ds = os.path.join(WORK, f"ds{sfx}")
    if not os.path.exists(img):
        sh("python3", os.path.join(ROOT, "tests/lib/mkimage.py"), img,
           str(size_mib or SIZE_MIB), "77")
    if not os.path.exists(os.path.join(ds, "vm/1")):
        sh(PROG, "pack", "-q", "--id", "1", "--time", "1700000000",
           img + ":disk", ds)
    return img, ds


def unique_chunk_paths(ds):
    fidx = os.path.join(ds, "vm/1/2023-11-14T22:13:20Z/disk.img.fidx")
    data = open(fidx, "rb").read()[4096:]
    zero = "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8"
    seen = []
    for i in range(0, len(data), 32):
        h = data[i:i + 32].hex()
        if h != zero and h not in seen:
            seen.append(h)
    return [f".chunks/{h[:4]}/{h}" for h in seen]


def fio_json(args):
    r = subprocess.run(["fio", "--output-format=json", *args], check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout)["jobs"][0]


class ShapedLoopback:
    """A link of RATE on lo (tc tbf), as between a PVE host and its PBS;
    affects all loopback traffic while in place."""

    def __init__(self, rate="1gbit"):
        self.rate = rate

    def __enter__(self):
        r = subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "tbf",
                            "rate", self.rate, "burst", "1mb", "latency",
                            "50ms"], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"tc: {r.stderr.strip()}")
        return self

    def __exit__(self, *exc):
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"])


def curl_chunks(ds, url, dl, cfg):
    """The curl command (written to config @cfg) that downloads the unique
    chunks of ds/vm/1 from @url into @dl, 16 at a time (https:
    certificate not checked)."""
    with open(cfg, "w") as f:
        for p in unique_chunk_paths(ds):
            f.write(f'url = "{url}/{p}"\noutput = "{dl}/{p}"\n')
    return ["curl", "-sk", "--parallel", "--parallel-max", "16",
            "--create-dirs", "-K", cfg]


def fetch_limit_fn(ds, url, size):
    """The fetch limit as a timed() function: curl --parallel-max 16 of
    the unique chunks of ds/vm/1 from @url (https: certificate not
    checked), plus the decode loop over them on every core; MiB/s of the
    image's @size."""
    fidx = os.path.join(ds, "vm/1/2023-11-14T22:13:20Z/disk.img.fidx")
    dl = os.path.join(WORK, "dl")
    curl = curl_chunks(ds, url, dl, os.path.join(WORK, "curl-dl.cfg"))

    def run():
        shutil.rmtree(dl, ignore_errors=True)
        drop_caches()
        t = time.monotonic()
        sh(*curl)
        dt = time.monotonic() - t
        dt += float(sh(os.path.join(BUILD, "bench/decode-loop"), "-j",
                       str(os.cpu_count() or 1), dl,
                       fidx).stdout.split()[1])
        shutil.rmtree(dl, ignore_errors=True)
        return size / dt / 2**20
    return run


def ckpt_write_cmd(src, dst, period):
    """Copy @src to @dst as restore writes, with an fdatasync every
    @period seconds (bench/lib/ckpt_write.py)."""
    return [sys.executable, os.path.join(os.path.dirname(__file__),
                                         "ckpt_write.py"),
            src, dst, str(period)]


def together_limit_fn(ds, url, img, size):
    """The work of a restore done by the reference tools side by side, as
    a timed() function: curl --parallel-max 16 of the unique chunks of
    ds/vm/1 from @url (into memory: /dev/shm), the decode loop on every
    core over a copy of them in memory, and dd oflag=direct of the raw
    image @img into a fresh file (run(period): ckpt_write.py's copy
    with an fdatasync every @period seconds instead), all three at once
    after the caches were dropped (the image read back in first: a
    restore does not read it); MiB/s of @size until the last one ends.
    On one machine the three share its cores and its disk, which the
    separate limits do not show."""
    fidx = os.path.join(ds, "vm/1/2023-11-14T22:13:20Z/disk.img.fidx")
    shm = tempfile.mkdtemp(prefix="pbslm-bench-", dir="/dev/shm")
    dl = os.path.join(shm, "dl")
    dec = os.path.join(shm, "dec")
    out = os.path.join(WORK, "together.img")
    curl = curl_chunks(ds, url, dl, os.path.join(WORK, "curl-together.cfg"))
    sh(*curl)
    os.rename(dl, dec)

    def run(period=None):
        write = (ckpt_write_cmd(img, out, period) if period else
                 ["dd", f"if={img}", f"of={out}", "bs=4M", "oflag=direct",
                  "conv=fdatasync", "status=none"])
        shutil.rmtree(dl, ignore_errors=True)
        if os.path.exists(out):
            os.unlink(out)
        drop_caches()
        subprocess.run(["cat", img], stdout=subprocess.DEVNULL)
        t = time.monotonic()
        procs = [subprocess.Popen(curl, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL),
                 subprocess.Popen([os.path.join(BUILD, "bench/decode-loop"),
                                   "-j", str(os.cpu_count() or 1), dec,
                                   fidx], stdout=subprocess.DEVNULL),
                 subprocess.Popen(write)]
        for p in procs:
            if p.wait():
                raise RuntimeError(f"{p.args[0]} failed")
        dt = time.monotonic() - t
        os.unlink(out)
        shutil.rmtree(dl, ignore_errors=True)
        return size / dt / 2**20

    def cleanup():
        shutil.rmtree(shm, ignore_errors=True)
    return run, cleanup


def proc_cpu_s(pid):
    """CPU seconds (user + system) process @pid has used so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class ChildCpu:
    """CPU seconds of the children waited for within the block."""

    def __enter__(self):
        import resource
        self.r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc):
        import resource
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (r1.ru_utime - self.r0.ru_utime +
                    r1.ru_stime - self.r0.ru_stime)
