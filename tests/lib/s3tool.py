#!/usr/bin/env python3
"""Direct S3 operations for the tests, through botocore (an independent
client): many objects at once, deletes, raw listings.

usage: s3tool.py ENDPOINT KEY SECRET put-many BUCKET PREFIX N
           N objects PREFIX<i>/index.json.blob (empty) and PREFIX<i>/x
       s3tool.py ENDPOINT KEY SECRET put BUCKET KEY          (empty)
       s3tool.py ENDPOINT KEY SECRET put-keys BUCKET FILE [SUFFIX]
           one empty object per line of FILE (+ SUFFIX)
       s3tool.py ENDPOINT KEY SECRET delete BUCKET KEY
       s3tool.py ENDPOINT KEY SECRET keys BUCKET PREFIX   (one per line)
"""
import sys

import botocore.session
from botocore.config import Config


def client(endpoint, key, secret):
    s = botocore.session.get_session()
    return s.create_client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key,
        aws_secret_access_key=secret, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"},
                      max_pool_connections=16, retries={"max_attempts": 3}))


def main():
    endpoint, key, secret, cmd = sys.argv[1:5]
    c = client(endpoint, key, secret)
    if cmd == "put-many":
        bucket, prefix, n = sys.argv[5], sys.argv[6], int(sys.argv[7])
        from concurrent.futures import ThreadPoolExecutor

        def one(i):
            c.put_object(Bucket=bucket, Key=f"{prefix}{i}/index.json.blob",
                         Body=b"")
            c.put_object(Bucket=bucket, Key=f"{prefix}{i}/x", Body=b"")
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(one, range(n)))
    elif cmd == "put-keys":
        from concurrent.futures import ThreadPoolExecutor
        keys = open(sys.argv[6]).read().split()
        tail = sys.argv[7] if len(sys.argv) > 7 else ""
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda k: c.put_object(Bucket=sys.argv[5],
                                               Key=k + tail, Body=b""),
                        keys))
    elif cmd == "put":
        c.put_object(Bucket=sys.argv[5], Key=sys.argv[6], Body=b"")
    elif cmd == "delete":
        c.delete_object(Bucket=sys.argv[5], Key=sys.argv[6])
    elif cmd == "keys":
        p = c.get_paginator("list_objects_v2")
        for page in p.paginate(Bucket=sys.argv[5], Prefix=sys.argv[6]):
            for o in page.get("Contents", []):
                print(o["Key"])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
