#!/usr/bin/env python3
"""QMP helpers for the cut-over tests.

qmp.py call SOCKET CMD [JSON-ARGS]
    Run one command on QEMU's monitor and print its "return" as JSON
    (exit 1 and the error text on an error).
qmp.py files PID MOUNTPOINT TARGET
    Which of the mount's files and of TARGET QEMU has open: prints
    "mount", "target", "both" or "none".
qmp.py disk SOCKET MOUNTPOINT
    Where the first disk's device reads and writes: "mount" (a file of
    the mount), "target" (a descriptor handed over: /dev/fdset/N), or
    the file name it has.
qmp.py proxy LISTEN QEMU-SOCKET LOG [--fail CMD] [--hold CMD] [--after CMD]
    A QMP proxy for fault injection, one client at a time: every command
    (and any descriptor passed with it) goes on to QEMU and is logged in
    LOG, but --fail CMD answers CMD with an error instead, and --hold CMD
    (only once --after CMD was seen, if given) stops before forwarding
    CMD: it writes LOG.held and waits until LOG.go exists.
"""
import json
import os
import socket
import sys
import time


def call(path, cmd, args=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rw")

    def reply():
        while True:
            m = json.loads(f.readline())
            if "event" not in m:
                return m
    reply()
    for c, a in (("qmp_capabilities", None), (cmd, args)):
        m = {"execute": c}
        if a is not None:
            m["arguments"] = a
        f.write(json.dumps(m) + "\n")
        f.flush()
        r = reply()
    s.close()
    return r


def files(pid, mnt, target):
    mount = tgt = False
    real = os.path.realpath(target)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            p = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        mount |= p.startswith(mnt.rstrip("/") + "/")
        tgt |= p == real
    return {(True, True): "both", (True, False): "mount",
            (False, True): "target", (False, False): "none"}[(mount, tgt)]


def proxy(listen, qemu, log, fail, hold, after):
    srv = socket.socket(socket.AF_UNIX)
    if os.path.exists(listen):
        os.unlink(listen)
    srv.bind(listen)
    srv.listen(4)
    seen_after = after is None
    held = False
    while True:
        c, _ = srv.accept()
        q = socket.socket(socket.AF_UNIX)
        q.connect(qemu)
        cf = q.makefile("rb")
        c.sendall(cf.readline())          # the greeting
        buf = b""
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(c, 65536, 4)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    cmd = msg.get("execute")
                    with open(log, "a") as lf:
                        lf.write(cmd + "\n")
                    if cmd == fail:
                        err = {"error": {"class": "GenericError",
                                         "desc": f"injected failure of {cmd}"}}
                        c.sendall(json.dumps(err).encode() + b"\r\n")
                        continue
                    if cmd == hold and seen_after and not held:
                        held = True
                        open(log + ".held", "w").close()
                        while not os.path.exists(log + ".go"):
                            time.sleep(0.05)
                    if cmd == after:
                        seen_after = True
                    socket.send_fds(q, [line + b"\n"], fds) if fds else \
                        q.sendall(line + b"\n")
                    for fd in fds:
                        os.close(fd)
                    while True:
                        r = cf.readline()
                        if not r:
                            raise ConnectionError
                        if b'"event"' in r:
                            continue
                        c.sendall(r)
                        break
        except (ConnectionError, OSError):
            pass
        c.close()
        q.close()


def main():
    a = sys.argv[1:]
    if a[0] == "call":
        r = call(a[1], a[2], json.loads(a[3]) if len(a) > 3 else None)
        if "error" in r:
            print(r["error"]["desc"])
            sys.exit(1)
        print(json.dumps(r["return"]))
    elif a[0] == "disk":
        r = call(a[1], "query-block")["return"]
        f = [b["inserted"]["file"] for b in r if "inserted" in b][0]
        print("mount" if f.startswith(a[2].rstrip("/") + "/") else
              "target" if f.startswith("/dev/fdset/") else f)
    elif a[0] == "files":
        print(files(int(a[1]), a[2], a[3]))
    elif a[0] == "proxy":
        opts = {"--fail": None, "--hold": None, "--after": None}
        rest = a[4:]
        while rest:
            opts[rest[0]] = rest[1]
            rest = rest[2:]
        proxy(a[1], a[2], a[3], opts["--fail"], opts["--hold"],
              opts["--after"])


main()
