"""Where the agent and its job sit in the node's cgroups: the job where HTCondor put it, the
agent beside it.

HTCondor's starter runs the job wrapper, and so (through sudo) this agent, in the job's
cgroup, and acts on that cgroup to limit, suspend and remove the job
(src/condor_utils/proc_family_direct_cgroup_v2.cpp: ``killCgroupTree`` writes
``cgroup.kill`` and SIGKILLs every pid of the tree, ``suspend_family`` writes
``cgroup.freeze``, ``cgroupify_myself`` sets ``memory.max`` and ``memory.oom.group``;
proc_family_direct_cgroup_v1.cpp: the memory, cpu,cpuacct and freezer hierarchies,
``freezer.state`` FROZEN). An agent in there dies with the job before it can count and
clean up, freezes with it (no accounting, no DHCP renewal), and eats from the job's
memory. So at startup the agent notes the cgroups it was started in (the job's), moves
itself to a cgroup of its own (``LARK_AGENT_CGROUP``, by default ``lark.agents`` beside
the job's cgroup), and starts the job back where it was started: in cgroup v2 in a child
``lark-<name>`` of it (backends/cgroup.py, so that teardown can kill what the job left),
in each v1 hierarchy in the start cgroup itself (HTCondor's v1 kill signals only the pids
of that cgroup, ``kill_family``). Whatever the starter does to its cgroup then reaches the
job and everything it forks, and never the agent.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import testhooks
from .cgroup import parse_events, unescape, write_control

# The v1 hierarchies whose job cgroup the starter acts on (proc_family_direct_cgroup_v1.cpp
# ``controllers``: memory, cpu,cpuacct and freezer for usage, limits and suspension; its
# devices cgroup only hides devices, which the agent never opens).
V1_CONTROLLERS = frozenset({"memory", "freezer", "cpu", "cpuacct"})
V1_NOT_CONTROLLERS = frozenset(
    {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode"}
)

log = logging.getLogger("lark.placement")


# -- pure: what /proc says ----------------------------------------------------


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: v2, or v1 with its controllers (``name=x`` for a
    named one)."""

    version: int
    controllers: frozenset[str]
    point: Path
    root: str  # the cgroup the mount shows at ``point`` (not / in a container)

    @property
    def label(self) -> str:
        return "cgroup v2" if self.version == 2 else f"v1 {','.join(sorted(self.controllers))}"


def parse_hierarchies(mountinfo: str) -> list[Hierarchy]:
    """The cgroup hierarchies of /proc/self/mountinfo, each once (its first mount).

    The file system type is the first field after the lone ``-``; a v1 mount's super
    options name its controllers (``rw,cpu,cpuacct``, ``rw,name=systemd``).
    """
    found: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail or tail[0] not in ("cgroup", "cgroup2"):
            continue
        point, root = Path(unescape(fields[4])), unescape(fields[3])
        if tail[0] == "cgroup2":
            hierarchy = Hierarchy(2, frozenset(), point, root)
        else:
            options = tail[2].split(",") if len(tail) > 2 else []
            controllers = frozenset(
                o
                for o in options
                if o.startswith("name=") or ("=" not in o and o not in V1_NOT_CONTROLLERS)
            )
            if not controllers:
                continue
            hierarchy = Hierarchy(1, controllers, point, root)
        if all(
            (h.version, h.controllers) != (hierarchy.version, hierarchy.controllers) for h in found
        ):
            found.append(hierarchy)
    return found


def parse_memberships(proc_cgroup: str) -> dict[frozenset[str], str]:
    """A process's cgroup in each hierarchy, from /proc/PID/cgroup (``ID:CONTROLLERS:PATH``):
    keyed by the controllers, the empty set for v2's ``0::`` line. A removed cgroup
    (`` (deleted)``) or a path that is not absolute is left out."""
    found: dict[frozenset[str], str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, names, path = parts
        if not path.startswith("/") or path.endswith(" (deleted)"):
            continue
        if number == "0" and names == "":
            found[frozenset()] = path
        elif names:
            found[frozenset(names.split(","))] = path
    return found


def job_root(start: str) -> str:
    """The job's whole cgroup, as the starter acts on it, given the one the agent was
    started in. HTCondor 24.x and later start the job in ``<X>.slice/<X>.scope`` and set
    limits, freeze and kill at ``<X>.slice`` (proc_family_direct_cgroup_v2.cpp:
    ``makeCgroup``, ``cgroupify_myself``); earlier ones, and v1, use ``<X>`` itself."""
    parent, _, name = start.rpartition("/")
    if name.endswith(".scope") and parent.endswith(f"/{name.removesuffix('.scope')}.slice"):
        return parent
    return start


def resolve_home(start: str, setting: str) -> str:
    """The agent's own cgroup: ``setting`` from the hierarchy's root when absolute, else
    from the job's cgroup (``job_root``; ``..`` allowed). Raises ValueError (the end of a
    sentence) when it climbs above the root or lies in the job's cgroup, where the
    starter's kill would reach it."""
    start = job_root(start)
    parts: list[str] = [] if setting.startswith("/") else [p for p in start.split("/") if p]
    for part in setting.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ValueError("climbs above the hierarchy's root")
            parts.pop()
        else:
            parts.append(part)
    home = "/" + "/".join(parts)
    if home == start or home.startswith(start.rstrip("/") + "/"):
        raise ValueError(f"is inside the job's cgroup ({start})")
    return home


def under(hierarchy: Hierarchy, path: str) -> Path | None:
    """Where cgroup ``path`` of the hierarchy is in the file system, or None when its mount
    does not show it."""
    root = hierarchy.root.rstrip("/")
    if path != hierarchy.root and not path.startswith(f"{root}/"):
        return None
    rest = path[len(root) :].strip("/")
    return hierarchy.point / rest if rest else hierarchy.point


def moved(hierarchy: Hierarchy) -> bool:
    """Whether the agent leaves the start cgroup of this hierarchy."""
    return hierarchy.version == 2 or bool(hierarchy.controllers & V1_CONTROLLERS)


# -- the kernel ---------------------------------------------------------------


@dataclass(frozen=True)
class Seat:
    """One hierarchy: the cgroup the agent was started in (the job's), and the agent's."""

    hierarchy: Hierarchy
    path: str  # the start cgroup, as /proc/self/cgroup names it
    start: Path
    home: Path

    @property
    def moved(self) -> bool:
        return self.home != self.start


@dataclass
class Placement:
    """Where the agent was started and where it lives, in each hierarchy it knows."""

    seats: list[Seat] = field(default_factory=list)
    why_no_v2: str = "cgroup v2 is not mounted"
    moves: list[str] = field(default_factory=list)
    stays: list[str] = field(default_factory=list)

    @property
    def v2(self) -> Seat | None:
        return next((s for s in self.seats if s.hierarchy.version == 2), None)

    @property
    def freezer(self) -> Seat | None:
        return next((s for s in self.seats if "freezer" in s.hierarchy.controllers), None)

    @classmethod
    def here(cls) -> Placement:
        """Where this process is, without moving (``LARK_AGENT_CGROUP = none``)."""
        return cls.leave(None)

    @classmethod
    def leave(cls, setting: str | None, quiet: bool = False) -> Placement:
        """Note the cgroups this process was started in and, unless ``setting`` is None,
        move it to its own (``resolve_home``) in each: v2 and the v1 hierarchies the
        starter acts on. Where it cannot move it says why, once, and stays; nothing here
        fails the job."""
        try:
            hierarchies = parse_hierarchies(Path("/proc/self/mountinfo").read_text())
            member = parse_memberships(Path("/proc/self/cgroup").read_text())
        except OSError as exc:
            return cls([], f"cannot read /proc/self: {exc.strerror}")
        placement = cls()
        if testhooks.pretend_lacks("cgroup2"):
            hierarchies = [h for h in hierarchies if h.version != 2]
            placement.why_no_v2 = "cgroup v2 pretended missing by _LARK_TEST_KERNEL_LACKS"
        for hierarchy in hierarchies:
            key = frozenset() if hierarchy.version == 2 else hierarchy.controllers
            path = member.get(key)
            start = under(hierarchy, path) if path is not None else None
            if path is None or start is None or not (start / "cgroup.procs").exists():
                if hierarchy.version == 2:
                    placement.why_no_v2 = (
                        f"this process's cgroup {path} is not visible under a cgroup2 mount"
                        if path is not None
                        else "this process is in no cgroup v2"
                    )
                continue
            placement.seats.append(Seat(hierarchy, path, start, start))
        if setting is not None:
            placement.seats = [placement._leave(seat, setting) for seat in placement.seats]
        if not quiet:
            placement.report()
        return placement

    def to_record(self) -> dict[str, object]:
        return {
            "seats": [
                [s.hierarchy.version, sorted(s.hierarchy.controllers), s.path, str(s.home)]
                for s in self.seats
            ],
            "why_no_v2": self.why_no_v2,
            "moves": self.moves,
            "stays": self.stays,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Placement:
        """A placement ``to_record`` wrote (wrap's first image), its hierarchies found
        again in mountinfo."""
        hierarchies = parse_hierarchies(Path("/proc/self/mountinfo").read_text())
        found = {(h.version, h.controllers): h for h in hierarchies}
        placement = cls([], str(record["why_no_v2"]), list(record["moves"]), list(record["stays"]))
        for version, controllers, path, home in record["seats"]:
            hierarchy = found[(int(version), frozenset(controllers))]
            start = under(hierarchy, str(path))
            if start is not None:
                placement.seats.append(Seat(hierarchy, str(path), start, Path(home)))
        return placement

    def _leave(self, seat: Seat, setting: str) -> Seat:
        if not moved(seat.hierarchy) or seat.path == "/":  # (the root is never frozen)
            return seat
        try:
            target = resolve_home(seat.path, setting)
            home = _move(seat.hierarchy, target)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"LARK_AGENT_CGROUP {exc}"
            self.stays.append(f"{seat.hierarchy.label} {seat.path} ({why})")
            return seat
        self.moves.append(f"{seat.hierarchy.label} {seat.path} -> {target}")
        return replace(seat, home=home)

    def report(self) -> None:
        if self.moves:
            log.info("the agent left the job's cgroups: %s", "; ".join(self.moves))
        if self.stays:
            log.warning(
                "the agent stays in the job's cgroup: %s; the starter's freeze, kill and "
                "limits reach the agent there too",
                "; ".join(self.stays),
            )

    @contextlib.contextmanager
    def joined(self, job_v2: Path | None) -> Iterator[None]:
        """The agent joins the job's cgroups while it forks the job, so the job is born in
        them (a child starts in its parent's cgroups) before it runs an instruction of its
        own; moving the job's pid after the fork would race with the job's first fork.
        (clone3's CLONE_INTO_CGROUP would spare the agent the move; Python's subprocess
        cannot ask for it.) v2: the job's own ``job_v2``, else the start cgroup; v1: the
        start cgroups the agent left. The agent goes home right after."""
        pid = str(os.getpid())
        joined: list[Seat] = []
        try:
            for seat in self.seats:
                target = job_v2 if seat.hierarchy.version == 2 and job_v2 else seat.start
                if target == seat.home:
                    continue
                try:
                    write_control(target / "cgroup.procs", pid)
                    joined.append(seat)
                except OSError as exc:
                    log.warning(
                        "could not start the job in its cgroup %s (%s): the agent's %s holds it",
                        target,
                        exc.strerror,
                        seat.hierarchy.label,
                    )
            yield
        finally:
            for seat in joined:
                try:
                    write_control(seat.home / "cgroup.procs", pid)
                except OSError as exc:  # kill_all refuses to kill a cgroup holding the agent
                    log.error("could not leave the job's cgroup: %s", exc.strerror)

    def frozen(self, job_v2: Path | None) -> bool:
        """Whether the starter has frozen the job: ``frozen 1`` in the v2 job cgroup's
        events (a frozen ancestor freezes it too), or the v1 freezer of the start cgroup
        FROZEN or FREEZING. Only where the agent left that cgroup: otherwise it is frozen
        too and asks nothing."""
        seat = self.v2
        if seat is not None and (seat.moved or job_v2 is not None):
            where = job_v2 or seat.start
            with contextlib.suppress(OSError):
                if parse_events((where / "cgroup.events").read_text()).get("frozen") == 1:
                    return True
        seat = self.freezer
        if seat is not None and seat.moved:
            with contextlib.suppress(OSError):
                state = (seat.start / "freezer.state").read_text().strip()
                return state in ("FROZEN", "FREEZING")
        return False


def _move(hierarchy: Hierarchy, target: str) -> Path:
    """Make the agent's cgroup (parents too) and move this process there. In v1 memory the
    agent's pages go with it (``move_charge_at_immigrate``, anonymous pages): what it
    allocated before, the job's limit would otherwise carry for the agent's life. cgroup
    v2 never moves a charge: what the agent allocated before it read the config (about
    11 MB) stays the job's."""
    home = under(hierarchy, target)
    if home is None:
        raise ValueError("is outside what this node's cgroup mount shows")
    home.mkdir(mode=0o755, parents=True, exist_ok=True)
    if "memory" in hierarchy.controllers:
        with contextlib.suppress(OSError):  # (gone from newer kernels' v1)
            write_control(home / "memory.move_charge_at_immigrate", "1")
    write_control(home / "cgroup.procs", str(os.getpid()))
    return home


def stopped(pid: int) -> bool:
    """Whether a process is stopped (SIGSTOP, state T): HTCondor's suspend without cgroups."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("T", "t")


def protect_from_oom() -> None:
    """The agent is small and must clean up after its job: the OOM killer never picks it
    (-1000). Set once the job is forked, since a child inherits the score: the job keeps
    the one the starter gave it (800: vanilla_proc.cpp, ``setupOOMScore``)."""
    try:
        Path("/proc/self/oom_score_adj").write_text("-1000")
    except PermissionError:  # lowering it takes CAP_SYS_RESOURCE, which a container may drop
        log.info("the agent keeps its OOM score: no CAP_SYS_RESOURCE to lower it")
    except OSError as exc:
        log.warning("could not protect the agent from the OOM killer: %s", exc.strerror)
