"""A fake condor_starter chirp server in a sandbox host, and the job's scratch directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.agent import NOBODY

COOKIE = "abcdefghijklmnopqrstuvwxyzabcde"
FAKE_STARTER = r"""
import ctypes, os, socket, sys
name, mode, cookie, record, bind = sys.argv[1:6]
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: /proc/PID/comm
srv = socket.socket()
srv.bind((bind, 0))
srv.listen(8)
if mode == "unprivileged":  # the listener of a process that is not root
    os.setgid(65534)
    os.setuid(65534)
print(srv.getsockname()[1], flush=True)
held = []
def note(text):
    with open(record, "a") as out:
        out.write(text + "\n")
while True:
    conn, _ = srv.accept()
    note("connect")
    if mode == "hangup":
        conn.close()
        continue
    if mode == "silent":
        held.append(conn)
        continue
    f = conn.makefile("rwb", buffering=0)
    authed = False
    for line in f:
        words = line.decode().split(" ", 2)
        if words[0] == "cookie":
            note("cookie " + words[1].strip())
            authed = words[1].strip() == cookie
            f.write(b"0\n" if authed else b"-1\n")
        elif words[0] == "set_job_attr_delayed" and authed:
            note("attr " + words[1] + " = " + words[2].rstrip("\n"))
            f.write(b"0\n")
        else:
            f.write(b"-1\n")
    conn.close()
"""


def start_fake_starter(
    sandbox, host, mode: str = "answer", name: str = "condor_starter", bind: str = "127.0.0.1"
) -> tuple[int, Path]:
    """A chirp server in the host's namespace; returns its port and its record file."""
    record = sandbox.tmp / f"chirp-{name}-{mode}-{len(sandbox.procs)}.record"
    record.touch()
    record.chmod(0o666)
    server = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-c", FAKE_STARTER, name,
         mode, COOKIE, str(record), bind],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    sandbox.procs.append(server)
    return int(sandbox.read_line(server.stdout).strip()), record


def job_scratch(sandbox, config: str | None = None) -> Path:
    """The job's scratch directory (the job user's, as the starter makes it), with a config."""
    sandbox.tmp.chmod(0o711)
    scratch = sandbox.tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    os.chown(scratch, NOBODY, NOBODY)
    if config is not None:
        path = scratch / ".chirp.config"
        path.write_text(config)
        os.chown(path, NOBODY, NOBODY)
    return scratch
