"""The job: spawned as its user inside the job's netns, watched through a pidfd, signalled.

The child inherits the network namespace of the thread that forks it, so we
fork from a throwaway thread that has joined the job's namespace: no
preexec_fn, no helper binary, and trio's own thread never switches.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from .backends import netns as netns_backend
from .backends.cgroup import JobCgroup
from .errors import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, JobStartError, KernelError, UsageError

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def resolve_user(requested: str | None, allow_root: bool, sudo_user: str | None) -> JobUser:
    """The job's user: ``--user``, else the sudo caller; root only when asked explicitly."""
    who = requested or sudo_user
    if not who:
        raise UsageError("no job user: pass --user USER (the job never runs as root by default)")
    try:
        entry = pwd.getpwuid(int(who)) if who.isdigit() else pwd.getpwnam(who)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"job user {who!r} does not exist on this node") from exc
    if entry.pw_uid == 0 and not allow_root:
        raise UsageError("refusing to run the job as root; pass --allow-root if you mean it")
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def exit_status(returncode: int) -> int:
    """Popen's -N for a signal becomes the shell's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


class Job:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pidfd = os.pidfd_open(proc.pid)

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        netns: str | None,
        user: JobUser,
        env: Mapping[str, str],
        cwd: Path | None,
        cgroup: JobCgroup | None = None,
    ) -> Job:
        """Start the job (born in ``cgroup`` when given); raise JobStartError (126/127)
        when it cannot be executed."""

        def fork() -> subprocess.Popen[bytes]:
            if netns is not None:  # (a namespace gone by now is Lark's error, not the job's)
                netns_backend.enter(netns)
            with cgroup.joined() if cgroup is not None else contextlib.nullcontext():
                return subprocess.Popen(
                    list(argv),
                    env=dict(env),
                    cwd=cwd,
                    user=user.uid,
                    group=user.gid,
                    extra_groups=list(user.groups),
                    process_group=0,
                    close_fds=True,
                )

        try:
            return cls(netns_backend.in_fresh_thread(fork))
        except FileNotFoundError as exc:
            raise JobStartError(f"job command not found: {argv[0]}", EXIT_NOT_FOUND) from exc
        except PermissionError as exc:
            raise JobStartError(
                f"job command {argv[0]} cannot be executed by {user.name}: {exc.strerror}",
                EXIT_CANNOT_EXECUTE,
            ) from exc
        except OSError as exc:
            code = EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
            raise JobStartError(f"cannot start job {argv[0]}: {exc.strerror}", code) from exc

    async def wait(self) -> int:
        await trio.lowlevel.wait_readable(self.pidfd)
        return exit_status(self.proc.wait())

    def signal(self, signum: int) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signum)

    def close(self) -> None:
        os.close(self.pidfd)


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
