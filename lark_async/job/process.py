"""The job: spawned as its user inside the job's netns, watched through a pidfd, signalled.

The child inherits the network namespace of the thread that forks it, so we
fork from a throwaway thread that has joined the job's namespace: no
preexec_fn, no helper binary, and trio's own thread never switches.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from ..backends import netns as netns_backend
from ..backends import view
from ..backends.cgroup import JobCgroup
from ..backends.placement import Placement
from ..errors import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, JobStartError, UsageError

log = logging.getLogger("lark.supervisor")
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
        placement: Placement | None = None,
        cgroup: JobCgroup | None = None,
        mounts: Sequence[tuple[Path, Path]] | None = None,
    ) -> Job:
        """Start the job (born in the cgroups the agent was started in, ``placement``, and
        in its own ``cgroup`` there when given; with ``mounts``, in a mount namespace of its
        own with those files bound over the node's: backends/view.py); raise JobStartError
        (126/127) when it cannot be executed."""

        def fork() -> subprocess.Popen[bytes]:
            if netns is not None:  # (a namespace gone by now is Lark's error, not the job's)
                netns_backend.enter(netns)
            if mounts is not None:
                for skipped in view.enter_own_mounts(mounts):
                    log.warning("the job sees the node's %s", skipped)
            born_in = (
                placement.joined(cgroup.path if cgroup is not None else None)
                if placement is not None
                else contextlib.nullcontext()
            )
            with born_in:
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

    async def stop(self, grace_s: float) -> None:
        """The trio way: TERM, a grace period, then KILL; always reap."""
        if self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        with trio.move_on_after(grace_s):
            await self.wait()
            return
        self.signal(signal.SIGKILL)
        await self.wait()

    def close(self) -> None:
        os.close(self.pidfd)
