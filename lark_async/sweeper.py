"""``cleanup --orphans``: every Lark resource on this node whose agent is gone.

A job is live while the agent named in its state record runs; nothing of a
live job is touched. Records of dead agents are undone first (their delete
scripts run). Then whatever is named like Lark's but belongs to no record at
all (an agent killed before it could write one down, or a record lost) goes
too: ``lark-*`` cgroups and namespaces (with any process left in them), ``e_*`` veths,
``LARK_*`` chains of both nft tables and of both iptables builds with their
jumps and masquerade rules, NAT sources no live job uses, and address lock
files no one holds.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .backends import address, cgroup, iptables, netns, nft, rtnl
from .cleanup import undo_record
from .errors import KernelError, LarkError
from .jobproc import kill_netns_processes
from .names import CHAIN_PREFIX, NETNS_PREFIX
from .record import Record

log = logging.getLogger("lark.sweeper")
_MASQ = re.compile(r"^-A POSTROUTING -s (\S+?)(?:/32)? .*--comment (LARK_\S+) -j MASQUERADE")


@dataclass
class Orphan:
    kind: str
    name: str
    undo: Callable[[], None]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def agent_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"lark" in cmdline and pid != os.getpid()


def _undo(record: Record, lingering: list[str] | None) -> None:
    errors = undo_record(record, lingering=lingering)
    if errors:
        raise errors[0]


def find_orphans(
    state_dir: Path, lock_dir: Path, match: str = "", lingering: list[str] | None = None
) -> list[Orphan]:
    """Everything to remove; ``match`` limits the by-name search to job names starting so.

    Veths that go with their namespaces are added to ``lingering`` when it is
    given, for the caller to settle all at once (``cleanup.settle_links``).
    """
    orphans: list[Orphan] = []
    known: set[str] = set()  # job names with a record: theirs is the record's business
    live_addresses: set[ipaddress.IPv4Address] = set()  # (or the dead record's undo's)
    live_locks: set[Path] = set()
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            record = Record.load(path)
        except LarkError:
            continue
        name = str(record.data.get("name", path.stem))
        known.add(name)
        fw = record.steps.get("firewall", {})
        if fw.get("internal_address"):
            live_addresses.add(ipaddress.IPv4Address(fw["internal_address"]))
        if record.steps.get("address", {}).get("lock"):
            live_locks.add(Path(record.steps["address"]["lock"]))
        if agent_alive(int(record.data.get("pid", 0))):
            continue
        orphans.append(Orphan("record", name, lambda r=record: _undo(r, lingering)))

    def unrecorded(job: str) -> bool:
        return job not in known and job.startswith(match)

    for job, path in cgroup.find_job_cgroups():  # before the namespaces: processes go first
        if unrecorded(job):
            undo = lambda j=job, p=path: _drop_cgroup(state_dir, j, p)  # noqa: E731
            orphans.append(Orphan("cgroup", str(path), undo))
    dropped: set[str] = set()  # jobs whose namespace goes, taking their veth along
    for ns in sorted(os.listdir(netns.NETNS_RUN_DIR)) if netns.NETNS_RUN_DIR.is_dir() else []:
        if ns.startswith(NETNS_PREFIX) and unrecorded(ns.removeprefix(NETNS_PREFIX)):
            dropped.add(ns.removeprefix(NETNS_PREFIX))
            orphans.append(Orphan("netns", ns, lambda n=ns: _drop_netns(n)))
    with rtnl.Channel() as host:
        links = host.link_names()
    for link in links:
        if link.startswith("e_") and unrecorded(link[2:]):
            if lingering is not None and link[2:] in dropped:
                undo = lambda n=link: lingering.append(n)  # noqa: E731
            else:
                undo = lambda n=link: netns.discard_link(n)  # noqa: E731
            orphans.append(Orphan("veth", link, undo))
    orphans += _nft_orphans(unrecorded, live_addresses)
    orphans += _iptables_orphans(unrecorded)
    for lock in sorted(lock_dir.glob("addr-*.lock")) if lock_dir.is_dir() else []:
        if lock not in live_locks and not address.is_locked(lock):
            orphans.append(Orphan("lock", lock.name, lambda p=lock: p.unlink(missing_ok=True)))
    return orphans


def _drop_cgroup(state_dir: Path, job: str, path: Path) -> None:
    """Kill what is in an unrecorded job's cgroup and remove it, unless a record of that job
    appeared since the scan (a job that just started: its cgroup is its record's business)."""
    if (state_dir / f"{job}.json").exists():
        return
    killed = cgroup.discard(path)
    if killed:
        log.info("killed %d process(es) in orphaned cgroup %s", killed, path)


def _drop_netns(name: str) -> None:
    kill_netns_processes(name)
    netns.discard_netns(name)


def _nft_orphans(
    unrecorded: Callable[[str], bool], live: set[ipaddress.IPv4Address]
) -> list[Orphan]:
    found: list[Orphan] = []
    for family in (nft.FAMILY, nft.BRIDGE_FAMILY):
        text = nft.dump_table(family)
        for chain in re.findall(rf"chain ({CHAIN_PREFIX}\S+) {{", text):
            job = chain.removeprefix(CHAIN_PREFIX)
            if not unrecorded(job):
                continue
            if family == nft.FAMILY:
                inet = nft.JobRules(chain, f"e_{job}", None, nat=False)
                found.append(Orphan("nft inet chain", chain, lambda r=inet: nft.discard_job(r)))
            else:
                br = nft.BridgeRules(chain, f"e_{job}", "")
                undo = lambda r=br: nft.discard_bridge_job(r)  # noqa: E731
                found.append(Orphan("nft bridge chain", chain, undo))
        sources = re.search(rf"set {nft.NAT_SET} {{[^}}]*?elements = {{ ([^}}]*) }}", text)
        for item in sources.group(1).replace("\n", " ").split(",") if sources else []:
            addr = ipaddress.IPv4Address(item.strip())
            if addr not in live:
                undo = lambda a=addr: nft.discard_nat_source(a)  # noqa: E731
                found.append(Orphan("nat source", str(addr), undo))
    return found


def _iptables_orphans(unrecorded: Callable[[str], bool]) -> list[Orphan]:
    found: list[Orphan] = []
    for command in ("iptables-nft", "iptables-legacy"):
        if shutil.which(f"{command}-save") is None:
            continue
        try:
            filt = iptables.save(command, "filter")
            nat = iptables.save(command, "nat")
        except KernelError:
            continue
        masq = {m.group(2): m.group(1) for m in map(_MASQ.match, nat.splitlines()) if m}
        chains = {
            ln[1:].split()[0] for ln in filt.splitlines() if ln.startswith(f":{CHAIN_PREFIX}")
        }
        for chain in sorted(chains | set(masq)):
            job = chain.removeprefix(CHAIN_PREFIX)
            if not unrecorded(job):
                continue
            addr = ipaddress.IPv4Address(masq.get(chain, "0.0.0.0"))
            rules = iptables.IptablesRules(command, chain, f"e_{job}", addr)
            undo = lambda r=rules: iptables.discard_job(r)  # noqa: E731
            found.append(Orphan(f"{command} chain", chain, undo))
    return found
