#!/usr/bin/env python3
"""Run a command on a pseudo-terminal and answer its prompts.

usage: onpty.py [--answer TEXT]... -- CMD [ARG]...

Each time the command's output ends with a prompt (": " at the end of
what it printed so far), the next --answer is typed, followed by Enter.
Prints everything the command wrote and exits with its status; 124 if it
is still running after 60 s.
"""
import os
import pty
import select
import sys
import time

args = sys.argv[1:]
answers = []
while args and args[0] == "--answer":
    answers.append(args[1])
    args = args[2:]
if not args or args[0] != "--":
    sys.exit("usage: onpty.py [--answer TEXT]... -- CMD...")
cmd = args[1:]

pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
out = b""
pending = b""
deadline = time.time() + 60
status = None
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            break
        out += data
        pending += data
        if pending.rstrip(b" ").endswith(b":") and answers:
            os.write(fd, answers.pop(0).encode() + b"\n")
            pending = b""
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        # drain what is left
        while True:
            r, _, _ = select.select([fd], [], [], 0.1)
            if not r:
                break
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        break
if status is None:
    try:
        _, status = os.waitpid(pid, 0 if time.time() < deadline else os.WNOHANG)
    except ChildProcessError:
        status = 0
sys.stdout.write(out.decode(errors="replace"))
if time.time() >= deadline:
    os.kill(pid, 9)
    sys.exit(124)
sys.exit(os.waitstatus_to_exitcode(status) if status is not None else 1)
