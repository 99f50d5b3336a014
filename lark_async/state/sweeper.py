"""``cleanup --orphans``: every Lark resource on this node whose agent is gone.

Whether a job's agent is alive is decided for each resource at the moment it
is removed, never from an earlier scan: every agent holds the lock on its job
name (backends/locks.py) from before its state record exists until its last
resource is gone, and the sweeper removes a thing of job X only while it holds
X's lock itself. When it cannot take the lock, X's agent is alive and its
things stay, whatever the scan said. What goes:

* records of dead agents, undone step by step (their delete scripts run);
* whatever is named for a job with no readable record (an agent killed before
  it wrote one, a record lost or damaged): ``lark-X`` cgroups (their processes
  killed at once) and namespaces with any
  process left in them, ``e_X`` veths, ``LARK_X`` chains of both nft tables
  and both iptables builds with their jumps and masquerade rules, the job's own
  resolv.conf and hosts (``X.view``), the damaged record and records' temporary files;
* NAT sources (addresses in nftables' ``nat_sources``) that no record claims:
  an address belongs to whoever holds its pair's lock (backends/address.py)
  and goes only while the sweeper holds that lock;
* lock files no one holds.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..backends import address, cgroup, firewall, locks, netns, view
from ..backends.netlink import rtnl
from ..decide.names import CHAIN_PREFIX, EXTERNAL_PREFIX, NETNS_PREFIX, job_of
from ..errors import KernelError, LarkError, map_errors
from .record import Record, UnreadableRecord, temp_owner
from .steps import (
    CgroupStep,
    FirewallStep,
    NetnsStep,
    ProcessesStep,
    Step,
    StepName,
    VethStep,
    ViewStep,
    in_order,
)
from .undo import undo_record, undo_steps

log = logging.getLogger("lark.sweeper")


@dataclass
class Orphan:
    kind: str
    name: str
    undo: Callable[[], bool]  # False: left alone (its agent turned out to be alive)
    parts: tuple[str, ...] = ()  # what goes with it (an unrecorded job's things), a line each

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    def lines(self) -> list[str]:
        return list(self.parts) or [str(self)]


def agent_alive(pid: int) -> bool:
    """A record's agent by its pid (agents of versions before the job lock have only this)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"lark" in cmdline and pid != os.getpid()


@dataclass
class _Sweep:
    """The undo of each orphan: take the owner's lock, look again, remove."""

    state_dir: Path
    lock_dir: Path
    lingering: list[str] | None

    def _readable_record(self, job: str) -> bool:
        try:
            Record.load(self.state_dir / f"{job}.json")
        except LarkError:
            return False
        return True

    def record(self, path: Path, job: str) -> bool:
        """A dead agent's record, read again under the job's lock and undone."""
        with locks.job_claimed(self.lock_dir, job) as mine:
            if not mine:
                return False
            try:
                record = Record.load(path)
            except LarkError:  # gone (someone else cleaned it) or rewritten since the scan
                return False
            if agent_alive(int(record.data["pid"])):
                return False
            self._undo(record)
            return True

    def _undo(self, record: Record) -> None:
        """The record's steps; its address pairs' NAT sources and locks only while the
        sweeper holds those locks (a live agent that holds one now uses that address)."""
        step = record.steps.get("address", {})
        held: dict[Path, int] = {}
        for key in ("lock", "lock6"):
            pair = Path(step[key]) if step.get(key) else None
            if pair is None:
                continue
            fd = None
            if pair.parent == self.lock_dir:
                with map_errors(f"lock {pair}"):
                    self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    fd = locks.try_lock(pair)
            if fd is not None:
                held[pair] = fd
                continue
            log.info("%s: address pair %s is not free: its NAT source stays",
                     record.data["name"], pair.name)  # fmt: skip
            del step[key]
            fw = record.steps.get("firewall")
            if fw is not None:
                spared = firewall.from_record(fw).without_nat_source()
                record.steps["firewall"] = spared.to_record()

        def release() -> None:
            for pair in list(held):
                address.release_lock(pair, held.pop(pair))

        try:
            errors = undo_record(record, release if held else None, self.lingering)
        finally:
            for fd in held.values():
                os.close(fd)
        if errors:
            raise errors[0]

    def by_name(self, job: str, action: Callable[[], None], unless_recorded: bool = True) -> bool:
        """Something named for ``job``: removed only while the sweeper holds the job's lock
        and (``unless_recorded``) the job has no readable record, which would say what is
        the job's (a record found now belongs to an agent that started after the scan)."""
        with locks.job_claimed(self.lock_dir, job) as mine:
            if not mine or (unless_recorded and self._readable_record(job)):
                return False
            action()
            return True

    def nat_source(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """An address in ``nat_sources`` (``nat_sources6``): removed only while the sweeper
        holds its pair's lock."""
        pair = address.lock_path(self.lock_dir, _pair_of(addr))
        with map_errors(f"lock {pair}"):
            self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = locks.try_lock(pair)
        if fd is None:
            return False
        try:
            firewall.discard_nat_source(addr)
        finally:
            if os.fstat(fd).st_size == 0:  # we made the file: it goes again
                locks.release(pair, fd)
            else:  # a dead owner's name in it keeps its pair from reuse until its record goes
                os.close(fd)
        return True

    def job_lock(self, path: Path, job: str) -> bool:
        """A job lock file no one holds (an agent's that was killed): the claim unlinks it."""
        if not path.exists():  # (a removal of the job's things took it already)
            return False
        with locks.job_claimed(self.lock_dir, job) as mine:
            return mine

    def lock_file(self, path: Path) -> bool:
        """An address lock no one holds, unless its owner's record still needs it."""
        with map_errors(f"lock {path}"):
            fd = locks.try_lock(path, create=False)
        if fd is None:
            return False
        owner = _lock_owner(fd)
        if owner is not None and self._readable_record(owner):
            os.close(fd)
            return False
        locks.release(path, fd)
        return True


def _lock_owner(fd: int) -> str | None:
    """The job named in an address lock file ("pid name")."""
    try:
        words = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        return None
    return job_of(words[1]) if len(words) >= 2 else None


def _read_owner(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return _lock_owner(fd)
    finally:
        os.close(fd)


def find_orphans(
    state_dir: Path,
    lock_dir: Path,
    match: str = "",
    lingering: list[str] | None = None,
    only: str | None = None,
) -> list[Orphan]:
    """Everything to remove, each with an undo that decides again when it runs.

    ``match`` limits the by-name search to job names starting so; ``only`` limits
    everything to that one job. Veths that go with their namespaces are added to
    ``lingering`` when it is given, for the caller to settle all at once (``settle``).
    """
    sweep = _Sweep(state_dir, lock_dir, lingering)
    orphans: list[Orphan] = []
    recorded: set[str] = set()  # jobs with a readable record: theirs is the record's business
    damaged: dict[str, Path] = {}
    claimed_addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    claimed_locks: set[Path] = set()
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        job = job_of(path.stem)
        if job is None or (only is not None and job != only):
            continue  # (a file Lark never writes)
        try:
            record = Record.load(path)
        except UnreadableRecord as exc:
            if not locks.job_alive(lock_dir, job):
                log.warning("%s: sweeping what is named %s", exc, job)
                damaged[job] = path
            continue
        except LarkError:
            continue  # gone since the listing
        recorded.add(job)
        fw = record.steps.get("firewall", {})
        for key in ("internal_address", "internal_address6"):  # (checked by Record.load)
            if fw.get(key):
                claimed_addresses.add(ipaddress.ip_address(fw[key]))
        for key in ("lock", "lock6"):
            if record.steps.get("address", {}).get(key):
                claimed_locks.add(Path(record.steps["address"][key]))
        if locks.job_alive(lock_dir, job) or agent_alive(int(record.data["pid"])):
            continue
        orphans.append(Orphan("record", job, functools.partial(sweep.record, path, job)))

    alive: dict[str, bool] = {}

    def unrecorded(name: str) -> str | None:
        """The job ``name`` is, if its things are to go by name (checked again on removal)."""
        job = job_of(name)
        if job is None or job in recorded:
            return None
        if only is not None and job != only:
            return None
        if only is None and job not in damaged and not job.startswith(match):
            return None
        if job not in alive:
            alive[job] = locks.job_alive(lock_dir, job)
        return None if alive[job] else job

    named: dict[str, list[Step]] = {}  # unrecorded jobs' things, as the steps a record lists
    for name, path in cgroup.find_job_cgroups():
        if job := unrecorded(name):
            named.setdefault(job, []).append(CgroupStep(path))
    for ns in sorted(os.listdir(netns.NETNS_RUN_DIR)) if netns.NETNS_RUN_DIR.is_dir() else []:
        if (named_for := job_of(ns, NETNS_PREFIX)) and (job := unrecorded(named_for)):
            named.setdefault(job, []).extend((ProcessesStep(ns), NetnsStep(ns)))
    with rtnl.Channel() as host:
        links = host.link_names()
    for link in links:
        if (named_for := job_of(link, EXTERNAL_PREFIX)) and (job := unrecorded(named_for)):
            named.setdefault(job, []).append(VethStep(link))
    for leftover in firewall.leftovers():
        if (named_for := job_of(leftover.chain, CHAIN_PREFIX)) and (job := unrecorded(named_for)):
            named.setdefault(job, []).append(
                FirewallStep(leftover.kind, leftover.chain, leftover.discard)
            )
    for path in sorted(state_dir.glob(f"*{view.VIEW_SUFFIX}")) if state_dir.is_dir() else []:
        if job := unrecorded(path.name.removesuffix(view.VIEW_SUFFIX)):
            named.setdefault(job, []).append(ViewStep(path))
    for job, things in named.items():
        steps = in_order(things)
        undo_all = functools.partial(_undo, steps, job, lingering)
        undo = functools.partial(sweep.by_name, job, undo_all)
        parts = tuple(s.describe() for s in steps if s.name != StepName.PROCESSES)
        orphans.append(Orphan("job", job, undo, parts))
    for job, path in damaged.items():
        undo = functools.partial(sweep.by_name, job, path.unlink, False)
        orphans.append(Orphan("unreadable record", job, undo))
    for path in sorted(state_dir.glob(".*.json.*")) if state_dir.is_dir() else []:
        job = temp_owner(path.name)
        if job is not None and (only is None or job == only) and not locks.job_alive(lock_dir, job):
            undo = functools.partial(sweep.by_name, job, functools.partial(_unlink, path), False)
            orphans.append(Orphan("state file", path.name, undo))

    owned: dict[Path, str | None] = {}  # address lock -> the job it names
    for lock in sorted(lock_dir.glob("addr-*.lock")) if lock_dir.is_dir() else []:
        owned[lock] = _read_owner(lock)
    nat_wanted: set[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None
    if only is not None:  # one job's NAT source: the pair its address lock names it as owner of
        nat_wanted = set()
        for lock, owner in owned.items():
            if owner == only and (found := re.fullmatch(r"addr-(.+)\.lock", lock.name)):
                nat_wanted.add(ipaddress.ip_address(found.group(1)) + 1)
    for addr in firewall.nat_sources():
        if addr in claimed_addresses or (nat_wanted is not None and addr not in nat_wanted):
            continue
        orphans.append(Orphan("nat source", str(addr), functools.partial(sweep.nat_source, addr)))
    for lock, owner in owned.items():
        if lock in claimed_locks or (only is not None and owner != only):
            continue
        if not address.is_locked(lock):
            orphans.append(Orphan("lock", lock.name, functools.partial(sweep.lock_file, lock)))
    for lock in sorted(lock_dir.glob("job-*.lock")) if lock_dir.is_dir() else []:
        job = job_of(lock.name.removeprefix("job-").removesuffix(".lock"))
        if job is None or (only is not None and job != only) or locks.job_alive(lock_dir, job):
            continue
        orphans.append(Orphan("lock", lock.name, functools.partial(sweep.job_lock, lock, job)))
    for lock in sorted(lock_dir.glob("user-*.lock")) if lock_dir.is_dir() and not only else []:
        if not locks.is_locked(lock):  # a wrap slot (backends/quota.py) of a killed agent
            orphans.append(Orphan("lock", lock.name, functools.partial(_free_lock, lock)))
    return orphans


def _free_lock(path: Path) -> bool:
    """Remove a lock file if, at this moment, no one holds it."""
    with map_errors(f"lock {path}"):
        fd = locks.try_lock(path, create=False)
    if fd is None:
        return False
    locks.release(path, fd)
    return True


def _pair_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> address.Pair:
    """The pool pair whose internal address ``addr`` is (its lock is named by the other)."""
    if isinstance(addr, ipaddress.IPv6Address):
        return address.Addresses6(addr - 1, addr)
    return address.Addresses(addr - 1, addr)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def settle(names: list[str], lock_dir: Path, timeout_s: float = 2.0) -> list[LarkError]:
    """Wait for veths left to the kernel to go; delete whichever is still there after
    ``timeout_s`` (its namespace was held by something else), each under its job's lock."""
    if not names:
        return []
    try:
        netns.await_links_gone(names, timeout_s)
        with rtnl.Channel() as host:
            left = set(names) & set(host.link_names())
    except OSError as exc:
        return [KernelError(f"list links: {exc.strerror or exc}")]
    errors: list[LarkError] = []
    for link in sorted(left):
        job = job_of(link, EXTERNAL_PREFIX)
        if job is None:
            continue
        try:
            with locks.job_claimed(lock_dir, job) as mine:
                if mine:
                    netns.discard_link(link)
        except LarkError as exc:
            errors.append(exc)
    return errors


def _undo(steps: list[Step], job: str, lingering: list[str] | None) -> None:
    errors = undo_steps(steps, job, lingering)
    if errors:
        raise errors[0]
