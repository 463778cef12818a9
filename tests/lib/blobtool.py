#!/usr/bin/env python3
"""Tamper with PBS data blobs for tests.
usage: blobtool.py flip-ct FILE      flip a ciphertext byte, fix the CRC
       blobtool.py flip-iv FILE      flip an IV byte (not covered by CRC)
       blobtool.py manifest FILE EXPR  decode an uncompressed-or-zstd
            manifest blob, apply a Python expression to the dict `m`,
            write it back as an uncompressed blob with a valid CRC"""
import json
import struct
import subprocess
import sys
import zlib

PLAIN = bytes([66, 171, 56, 7, 190, 131, 112, 161])
ZSTD = bytes([49, 185, 88, 66, 111, 182, 163, 127])


def crc(b):
    return struct.pack("<I", zlib.crc32(b) & 0xffffffff)


cmd, path = sys.argv[1], sys.argv[2]
b = bytearray(open(path, "rb").read())
if cmd == "flip-ct":
    b[44] ^= 0x01
    b[8:12] = crc(bytes(b[44:]))
elif cmd == "flip-iv":
    b[12] ^= 0x01
elif cmd == "manifest":
    payload = bytes(b[12:])
    if bytes(b[:8]) == ZSTD:
        payload = subprocess.run(["zstd", "-dc"], input=payload,
                                 capture_output=True, check=True).stdout
    m = json.loads(payload)
    exec(sys.argv[3], {"m": m})
    body = json.dumps(m, indent=2).encode()
    b = bytearray(PLAIN + crc(body) + body)
else:
    sys.exit("unknown command")
open(path, "wb").write(b)
