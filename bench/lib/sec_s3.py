"""bench section: s3."""
from common import *  # noqa: F401,F403


class Rgw:
    """radosgw in a throwaway single-host Ceph cluster (tests/lib/rgw.sh)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bench-rgw.", dir=WORK)
        env = dict(os.environ, RGW_MEMSTORE_BYTES=str(6 << 30))
        out = sh("bash", os.path.join(ROOT, "tests/lib/rgw.sh"), "start",
                 self.dir, env=env).stdout.split()
        v = dict(kv.split("=", 1) for kv in out if "=" in kv)
        self.url, self.start_ms = v["RGW_URL"], int(v["RGW_START_MS"])
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=v["RGW_KEY"],
                        AWS_SECRET_ACCESS_KEY=v["RGW_SECRET"])
        for k in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
            self.env.pop(k, None)
        sh("curl", "-s", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3",
           "--user", f"{v['RGW_KEY']}:{v['RGW_SECRET']}", "-H",
           "x-amz-content-sha256: UNSIGNED-PAYLOAD", f"{self.url}/bench")

    def stop(self):
        subprocess.run(["bash", os.path.join(ROOT, "tests/lib/rgw.sh"),
                        "stop", self.dir])
        shutil.rmtree(self.dir, ignore_errors=True)


class DelayProxy(Nginx):
    """nginx in front of TARGET adding MS to every request (Lua)."""

    def __init__(self, target, delay_ms):
        import socket
        self.dir = tempfile.mkdtemp(prefix="bench-proxy.", dir=WORK)
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            self.port = so.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        d = self.dir
        conf = f"""load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
daemon off; master_process off; worker_processes 1;
error_log {d}/error.log warn; pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p;
 fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
 upstream up {{ server {target.split('//')[1]}; keepalive 64; }}
 server {{ listen 127.0.0.1:{self.port};
   location / {{ access_by_lua_block {{ ngx.sleep({delay_ms / 1000}) }}
     proxy_pass http://up; proxy_http_version 1.1;
     proxy_set_header Connection ""; proxy_set_header Host $http_host;
     proxy_buffering off; }} }} }}
"""
        open(f"{d}/nginx.conf", "w").write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf", "-p", d],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(50):
            if subprocess.run(["curl", "-s", "-o", "/dev/null",
                               self.url + "/"]).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("nginx proxy did not start")


def s3_store():
    print("s3: a PBS 4 S3 datastore on radosgw (Ceph, memstore) against the"
          " same datastore from nginx over HTTP (MiB/s = image size / time)")
    img, ds = packed_mixed()
    size = os.path.getsize(img)
    out = os.path.join(WORK, "out.img")
    mnt = os.path.join(WORK, "mnt-s3")
    tgt = os.path.join(WORK, "tgt-s3.raw")
    ng = Nginx(ds)
    rgw = Rgw()
    repo = "s3://bench/store1"
    try:
        print(f"  (radosgw cluster up in {rgw.start_ms / 1000:.1f} s)")
        sh(PROG, "pack", "-q", "--s3-endpoint", rgw.url, "--id", "1",
           "--time", "1700000000", img + ":disk", repo, env=rgw.env)

        def restore(url, extra=(), env=None, conns=16):
            def run():
                drop_caches()
                t = time.monotonic()
                sh(PROG, "restore", "-q", "--connections", str(conns),
                   *extra, url, "vm/1", "disk", out, env=env)
                dt = time.monotonic() - t
                os.unlink(out)
                return size / dt / 2**20
            return run

        def stream(url, extra=(), env=None):
            def run():
                rm_target(tgt)
                drop_caches()
                t = time.monotonic()
                m = LiveMount(url, "vm/1", mnt, target=tgt, extra=extra,
                              env=env)
                m.wait_file(".status")
                m.wait_complete()
                dt = time.monotonic() - t
                m.umount()
                return size / dt / 2**20
            return run
        s3x = ["--s3-endpoint", rgw.url]
        b = row("s3", "restore from nginx over HTTP, 16 connections",
                "MiB/s", timed(restore(ng.url)))
        row("s3", "restore from radosgw (S3), 16 connections", "MiB/s",
            timed(restore(repo, s3x, rgw.env)), b)
        b = row("s3", "stream to completion from nginx over HTTP", "MiB/s",
                timed(stream(ng.url)))
        row("s3", "stream to completion from radosgw (S3)", "MiB/s",
            timed(stream(repo, s3x, rgw.env)), b)
        print("s3-10ms: nginx in front of radosgw adds 10 ms per request")
        px = DelayProxy(rgw.url, 10)
        try:
            pxx = ["--s3-endpoint", px.url]
            b = row("s3-10ms", "restore from S3, 1 request in flight, +10 ms",
                    "MiB/s", timed(restore(repo, pxx, rgw.env, 1)))
            row("s3-10ms", "restore from S3, 16 requests in flight, +10 ms",
                "MiB/s", timed(restore(repo, pxx, rgw.env, 16)), b)
        finally:
            px.stop()
    finally:
        rgw.stop()
        ng.stop()
        rm_target(tgt)
