"""The processes inside a job's network namespace, found through /proc and stopped: what a
job without a cgroup (or a dead agent's job) left behind, so the namespace can go."""

from __future__ import annotations

import os
import signal
import time

from ..errors import KernelError
from . import netns as netns_backend

KILL_BOUND_S = 5.0
EMPTY_PASSES = 4  # consecutive passes that find nobody: see kill_netns_processes


def kill_netns_processes(netns: str, grace_s: float = 2.0, bound_s: float = KILL_BOUND_S) -> int:
    """Stop every process still inside the job's namespace (daemons the job left behind,
    or the whole job where it has no cgroup): TERM, up to ``grace_s`` to exit, then SIGKILL
    until a scan finds nobody, so the namespace and its veth can really go. Returns how
    many processes there were; raises KernelError if some outlive ``bound_s`` of SIGKILL.

    One pass is not enough: a job that forks and exits continuously has a new pid by the
    time a pass ends. So the SIGKILL pass repeats, and kills each process the moment it
    finds it, newest (highest pid) first: the newest member of a forking chain is the one
    about to fork, and a process SIGKILLed in fork() leaves no child (the kernel aborts a
    fork when a fatal signal is pending). A pass lists /proc before it looks, so a chain
    member forked after the listing while its parent died before the look escapes that
    pass: the namespace counts as empty only after EMPTY_PASSES passes in a row find nobody.
    """
    try:
        st = netns_backend.path_of(netns).stat()
    except FileNotFoundError:
        return 0
    target = (st.st_dev, st.st_ino)
    seen: set[int] = set()
    deadline = time.monotonic() + grace_s
    while found := _signal_inside(target, signal.SIGTERM, skip=seen):  # newcomers get TERM too
        seen |= found
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    deadline = time.monotonic() + bound_s
    killed: set[int] = set()
    empty = 0
    while empty < EMPTY_PASSES:
        found = _signal_inside(target, signal.SIGKILL, skip=set())
        if not found:
            empty += 1
            continue
        empty = 0
        seen |= found
        if time.monotonic() >= deadline:
            raise KernelError(
                f"{len(found)} process(es) still in network namespace {netns} after "
                f"{bound_s:g} s of SIGKILL"
            )
        if found <= killed:  # only the dying: give them a moment
            time.sleep(0.001)
        killed |= found
    return len(seen)


def _ns_of(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:  # gone, or a zombie
        return None
    return st.st_dev, st.st_ino


def _signal_inside(target: tuple[int, int], signum: int, skip: set[int]) -> set[int]:
    """Signal each process of the namespace as soon as it is found (except those in
    ``skip``); return the pids found. Each is pinned by a pidfd and checked again before
    the signal, so a pid reused by another process in between is never signalled
    (pid_max may be 32768: a fork loop wraps it in seconds)."""
    found: set[int] = set()
    pids = sorted((int(n) for n in os.listdir("/proc") if n.isdigit()), reverse=True)
    for pid in pids:
        if pid == os.getpid() or _ns_of(pid) != target:
            continue
        found.add(pid)
        if pid in skip:
            continue
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if _ns_of(pid) == target:
                signal.pidfd_send_signal(fd, signum)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    return found
