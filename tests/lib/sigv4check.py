#!/usr/bin/env python3
"""Check the SigV4 signatures pbs-livemount's requests carry (signed by
libcurl) against botocore's signer, for the requests as they arrived.

usage: sigv4check.py serve PORT LOG     a tiny HTTP server recording every
                                        request (method, path, headers,
                                        body SHA-256) as JSON lines; GET
                                        answers 404 (NoSuchKey), PUT 200
       sigv4check.py check LOG KEY SECRET REGION
                                        recompute each request's signature
                                        with botocore over the headers its
                                        Authorization names, and compare

A real S3 server (radosgw) checks signatures too, but only says yes or
no; this names the request and both signatures when they differ, and
checks them against the reference implementation of the AWS SDKs.
"""
import hashlib
import http.server
import json
import re
import sys
import urllib.parse


def serve(port, log):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def record(self, body):
            with open(log, "a") as f:
                f.write(json.dumps({
                    "method": self.command, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                }) + "\n")

        def reply(self, code, text):
            b = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_GET(self):
            self.record(b"")
            if "list-type=2" in self.path and "continuation-token" not in \
                    self.path:
                # A first page that is truncated, with a token that
                # needs percent-encoding: the second request signs it.
                prefix = re.search(r"prefix=([^&]*)", self.path).group(1)
                prefix = urllib.parse.unquote(prefix)
                self.reply(200, "<?xml version=\"1.0\"?><ListBucketResult>"
                           f"<Prefix>{prefix}</Prefix><IsTruncated>true"
                           "</IsTruncated><NextContinuationToken>1/a+b=="
                           "&amp;c</NextContinuationToken><CommonPrefixes>"
                           f"<Prefix>{prefix}100/</Prefix></CommonPrefixes>"
                           "</ListBucketResult>")
                return
            self.reply(404, "<?xml version=\"1.0\"?><Error><Code>NoSuchKey"
                       "</Code></Error>")

        def do_PUT(self):
            n = int(self.headers.get("Content-Length", "0"))
            self.record(self.rfile.read(n))
            self.reply(200, "")

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H).serve_forever()


def check(log, key, secret, region):
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials(key, secret)
    n = 0
    for line in open(log):
        r = json.loads(line)
        h = r["headers"]
        m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/"
                     r"s3/aws4_request, ?SignedHeaders=([^,]+), ?"
                     r"Signature=([0-9a-f]{64})$", h.get("authorization", ""))
        if not m:
            sys.exit(f"{r['method']} {r['path']}: no SigV4 Authorization: "
                     f"{h.get('authorization')!r}")
        if m.group(1) != key or m.group(3) != region:
            sys.exit(f"{r['method']} {r['path']}: credential scope "
                     f"{m.group(1)}/{m.group(3)}, want {key}/{region}")
        signed = m.group(4).split(";")
        for must in ("host", "x-amz-date", "x-amz-content-sha256"):
            if must not in signed:
                sys.exit(f"{r['method']} {r['path']}: {must} not signed")
        if h["x-amz-content-sha256"] not in (r["body_sha256"],
                                             "UNSIGNED-PAYLOAD"):
            sys.exit(f"{r['method']} {r['path']}: x-amz-content-sha256 "
                     f"{h['x-amz-content-sha256']} is not the body's "
                     f"{r['body_sha256']}")
        req = AWSRequest(method=r["method"],
                         url=f"http://{h['host']}{r['path']}",
                         headers={k: h[k] for k in signed})
        req.context["timestamp"] = h["x-amz-date"]
        auth = S3SigV4Auth(creds, "s3", region)
        # botocore signs with the headers it is given; nothing added.
        canonical = auth.canonical_request(req)
        want = auth.signature(auth.string_to_sign(req, canonical), req)
        if want != m.group(5):
            sys.exit(f"{r['method']} {r['path']}: signature {m.group(5)}, "
                     f"botocore computes {want}\ncanonical request:\n"
                     f"{canonical}")
        n += 1
    if not n:
        sys.exit("no requests recorded")
    print(f"ok: {n} signatures equal botocore's")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        check(*sys.argv[2:6])
