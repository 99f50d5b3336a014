"""``wrap``'s second process image: the agent execs itself once it has left the job's
cgroup, handing what it found to the new image on a sealed memfd.

A page stays charged to the cgroup that was current when it was first touched: cgroup v2
never moves a charge, and v1's ``move_charge_at_immigrate`` is gone from new kernels. What
the interpreter touched before it left the job's cgroup (some 17 MB, reading the HTCondor
config on the way) would count against the job's memory limit for the agent's whole life.
An exec drops every page of the old image, and the new one starts in the agent's own
cgroup.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from typing import Any, NoReturn

# sudo -C 4 (contrib/htcondor/lark-job-wrapper) closes every fd from 4 up, so the caller
# cannot put one there; and the memfd must be root's, which a caller's never is
HANDOFF_FD = 4
HANDOFF_NAME = "lark-handoff"
MAX_BYTES = 1 << 20
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def hand_over(record: dict[str, Any]) -> NoReturn:
    """Exec this same command again, with ``record`` waiting on ``HANDOFF_FD``."""
    fd = os.memfd_create(HANDOFF_NAME, os.MFD_ALLOW_SEALING)
    os.write(fd, json.dumps(record).encode())
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    os.lseek(fd, 0, os.SEEK_SET)
    if fd != HANDOFF_FD:
        os.dup2(fd, HANDOFF_FD)  # (inheritable, unlike fd)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, sys.orig_argv)


def take_over() -> dict[str, Any] | None:
    """The record the first image handed over, or None: no fd there, or not a sealed memfd
    of root's by that name (it is then left alone)."""
    try:
        st = os.fstat(HANDOFF_FD)
        target = os.readlink(f"/proc/self/fd/{HANDOFF_FD}")
        seals = fcntl.fcntl(HANDOFF_FD, fcntl.F_GET_SEALS)
    except OSError:
        return None
    if st.st_uid != 0 or not target.startswith(f"/memfd:{HANDOFF_NAME} ") or seals != _SEALS:
        return None
    with os.fdopen(HANDOFF_FD, "rb") as f:
        data = f.read(MAX_BYTES)
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
