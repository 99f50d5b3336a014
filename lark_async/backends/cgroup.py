"""The job's own cgroup (v2), so nothing the job forks outlives its teardown.

A job that forks and exits continuously has a new pid by the time anyone has
listed its pids; signalling what a scan found never catches up with it. A
cgroup holds every descendant of the job, wherever it forks, and the kernel
kills the whole cgroup at once (``cgroup.kill``, Linux 5.14+) or freezes it,
so that nothing in it can fork, while each of its pids gets SIGKILL.
HTCondor kills a job's family the same way
(src/condor_utils/proc_family_direct_cgroup_v2.cpp: ``killCgroupTree``
writes ``cgroup.kill`` and SIGKILLs every pid of the tree, ``kill_family``
freezes around it, ``trimCgroupTree`` then removes the directories bottom
up, ``current_parent_cgroup`` reads the ``0::`` line of /proc/self/cgroup).

The job's cgroup ``lark-<name>`` is a child of the cgroup the agent was started in,
the starter's job cgroup (backends/placement.py), so that whatever the starter does
to its cgroup covers the job too; it is not delegated to the job's user: the job can
neither leave it nor make sub-cgroups in it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .. import testhooks
from ..decide.names import NETNS_PREFIX, check_name
from ..errors import KernelError, LarkError, map_errors

PREFIX = NETNS_PREFIX  # lark-<name>, like the job's namespace
KILL_BOUND_S = 5.0  # HTCondor's killCgroupTree waits 5 s for the tree to empty, too
FREEZE_BOUND_S = 1.0
_POLL_S = 0.002

log = logging.getLogger("lark.cgroup")


# -- pure: what /proc says ----------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A cgroup2 mount: where it is, and which cgroup of the hierarchy it shows there."""

    point: Path
    root: str
    read_only: bool = False


def unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (proc(5))."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_read_only(options: str, super_options: str = "") -> bool:
    """Whether a mount is read-only: ``ro`` in its own options (a read-only bind, as a
    container runtime mounts /sys/fs/cgroup) or in its file system's (proc(5))."""
    return "ro" in options.split(",") or "ro" in super_options.split(",")


def parse_v2_mounts(mountinfo: str) -> list[Mount]:
    """The cgroup2 mounts of /proc/self/mountinfo, in its order.

    Each line is ``ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE
    SUPEROPTIONS``; the optional fields vary in number, so the file system type is the
    first field after the lone ``-``.
    """
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) >= 6 and tail and tail[0] == "cgroup2":
            read_only = parse_read_only(fields[5], tail[2] if len(tail) > 2 else "")
            mounts.append(Mount(Path(unescape(fields[4])), unescape(fields[3]), read_only))
    return mounts


def parse_v2_path(proc_cgroup: str) -> str | None:
    """A process's cgroup v2 path: the ``0::/path`` line of /proc/PID/cgroup (cgroups(7)).

    None when it has none (a v1-only system) or its cgroup was removed (`` (deleted)``).
    """
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            path = line[3:]
            if path.startswith("/") and not path.endswith(" (deleted)"):
                return path
    return None


def derive_mount(mounts: list[Mount], path: str) -> Mount | None:
    """The mount that shows cgroup ``path``: the one whose root holds it most closely (the
    hierarchy's root, or a bind mount of a subtree, as in a container)."""
    best: Mount | None = None
    for mount in mounts:
        root = mount.root.rstrip("/")
        if path != mount.root and not path.startswith(f"{root}/"):
            continue
        if best is None or len(root) > len(best.root.rstrip("/")):
            best = mount
    return best


def parse_events(text: str) -> dict[str, int]:
    """``cgroup.events``: lines of ``key value`` (``populated 1``, ``frozen 0``)."""
    events = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            events[key] = int(value)
    return events


def job_of(dirname: str) -> str | None:
    """The job name of a ``lark-<name>`` cgroup directory, or None if it is not one.

    Job names have no dots, so a systemd unit such as ``lark-cleanup.service`` is never
    taken for a job's cgroup.
    """
    if not dirname.startswith(PREFIX):
        return None
    try:
        return check_name(dirname.removeprefix(PREFIX))
    except LarkError:
        return None


# -- the kernel ---------------------------------------------------------------


def write_control(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def populated(path: Path) -> bool:
    """Whether a live process is in the cgroup or below it (a gone cgroup holds none)."""
    try:
        return parse_events((path / "cgroup.events").read_text()).get("populated", 0) == 1
    except FileNotFoundError:
        return False


def _tree(path: Path) -> list[Path]:
    """The cgroup and every cgroup below it, deepest first (the order rmdir needs)."""
    found = [Path(top) / d for top, dirs, _ in os.walk(path) for d in dirs]
    return [*sorted(found, key=lambda p: len(p.parts), reverse=True), path]


def _pids(path: Path) -> set[int]:
    pids: set[int] = set()
    for group in _tree(path):
        with contextlib.suppress(FileNotFoundError):
            pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return pids


def _wait_events(path: Path, key: str, value: int, deadline: float) -> bool:
    while True:
        try:
            events = parse_events((path / "cgroup.events").read_text())
        except FileNotFoundError:
            return key == "populated" and value == 0
        if events.get(key, 0) == value:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def kill_all(path: Path, bound_s: float = KILL_BOUND_S) -> int:
    """SIGKILL everything in the cgroup tree at ``path`` at once and wait (bounded) until
    it is empty; return how many processes were in it. A missing cgroup is empty.

    With ``cgroup.kill`` the kernel kills the tree, and a fork racing with it yields no
    survivor. Without it the tree is frozen first, so nothing in it can fork while each
    pid gets SIGKILL, then thawed so the killed can die.
    """
    if not path.is_dir():
        return 0
    with map_errors(f"kill the processes of cgroup {path}"):
        before = _pids(path)
        if os.getpid() in before:  # never kill the agent itself
            raise KernelError(f"cgroup {path} holds the agent itself; not killing it")
        deadline = time.monotonic() + bound_s
        while populated(path):
            if time.monotonic() >= deadline:
                raise KernelError(
                    f"processes of cgroup {path} still alive {bound_s:g} s after SIGKILL"
                )
            if (path / "cgroup.kill").exists() and not testhooks.pretend_lacks("cgroup.kill"):
                write_control(path / "cgroup.kill", "1")
            else:
                _freeze_and_kill(path, deadline)
            _wait_events(path, "populated", 0, min(deadline, time.monotonic() + 1.0))
    return len(before)


def _freeze_and_kill(path: Path, deadline: float) -> None:
    """cgroup.freeze, wait for ``frozen 1`` (bounded: a task in uninterruptible sleep
    freezes late), SIGKILL every pid of the tree, thaw."""
    try:
        write_control(path / "cgroup.freeze", "1")
        _wait_events(path, "frozen", 1, min(deadline, time.monotonic() + FREEZE_BOUND_S))
        for pid in _pids(path):
            if pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(FileNotFoundError):
            write_control(path / "cgroup.freeze", "0")


def discard(path: Path, bound_s: float = KILL_BOUND_S) -> int:
    """Kill what is in a job's cgroup and remove it with whatever is below it; a missing
    cgroup is done. Returns how many processes were killed."""
    if job_of(path.name) is None:
        raise KernelError(f"refusing to remove {path}: not a Lark job's cgroup")
    if not path.exists():
        return 0
    if not (path / "cgroup.procs").exists():
        raise KernelError(f"refusing to remove {path}: not a cgroup")
    killed = kill_all(path, bound_s)
    for group in _tree(path):
        try:
            group.rmdir()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KernelError(f"remove cgroup {group}: {exc.strerror}") from exc
    return killed


def job_dir(home: Path, name: str) -> Path:
    return home / f"{PREFIX}{name}"


@dataclass
class JobCgroup:
    """The job's own cgroup, below the cgroup the agent was started in (backends/placement.py)."""

    path: Path

    @property
    def method(self) -> str:
        if (self.path / "cgroup.kill").exists() and not testhooks.pretend_lacks("cgroup.kill"):
            return "cgroup.kill"
        return "cgroup.freeze, then SIGKILL of each process"

    @classmethod
    def create(cls, name: str, parent: Path) -> JobCgroup:
        """Make ``lark-<name>`` below ``parent``. The name is this agent's (its state
        record was created exclusively), so one already there is a dead job's leftover:
        it is emptied and made afresh, as HTCondor's makeCgroup trims an existing one."""
        path = job_dir(parent, name)
        with map_errors(f"create cgroup {path}"):
            try:
                path.mkdir(mode=0o755)
            except FileExistsError:
                discard(path)
                path.mkdir(mode=0o755)
        group = cls(path)
        if not (path / "cgroup.kill").exists() and not (path / "cgroup.freeze").exists():
            discard(path)
            raise KernelError(f"cgroup {path} has neither cgroup.kill nor cgroup.freeze")
        return group

    def kill_all(self) -> int:
        return kill_all(self.path)


def find_job_cgroups() -> list[tuple[str, Path]]:
    """Every ``lark-<job>`` cgroup on this node, wherever its agent was: (job name, path).

    Walks each cgroup2 mount; a job's cgroup is a leaf, so the walk does not go into one.
    """
    try:
        mounts = parse_v2_mounts(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return []
    found: list[tuple[str, Path]] = []
    seen: set[tuple[int, int]] = set()
    for mount in mounts:
        for top, dirs, _ in os.walk(mount.point):
            keep = []
            for d in dirs:
                path = Path(top) / d
                try:
                    st = path.stat()
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                job = job_of(d)
                if job is not None:
                    found.append((job, path))
                else:
                    keep.append(d)
            dirs[:] = keep
    return found
