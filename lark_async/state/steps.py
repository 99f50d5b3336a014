"""The steps of a job's life that leave something behind, as typed objects that undo themselves.

A state record lists steps by a closed set of names (``StepName``); each name has one class
here that is built from the record's details (``from_record``), undoes its resource
idempotently (absent means done, as CNI's DEL) and describes it in one phrase. The live
teardown, ``cleanup NAME`` and ``cleanup --orphans`` all undo through ``undo_steps``
(``undo.py``), in ``UNDO_ORDER``; the sweeper turns what it finds without a record into
the same objects (``sweeper.py``).
"""

from __future__ import annotations

import ipaddress
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from ..backends import address, cgroup, firewall, netns, proxyndp, view
from ..backends.procs import kill_netns_processes
from ..backends.scripts import Script, run_script
from ..errors import KernelError

log = logging.getLogger("lark.cleanup")


class StepName(StrEnum):
    """The names a state record may list its steps by (``processes`` is never recorded: it
    goes with ``netns``, whose processes it kills)."""

    CGROUP = "cgroup"
    DHCP = "dhcp"
    DHCP6 = "dhcp6"
    SCRIPT = "script"
    FIREWALL = "firewall"
    PROCESSES = "processes"
    VETH = "veth"
    NETNS = "netns"
    ADDRESS = "address"
    VIEW = "view"


RECORDED = frozenset(StepName) - {StepName.PROCESSES}

# DESIGN.md section 2's teardown, whoever runs it: the job's cgroup first (a dead agent's job
# stops before anything else goes, as a live agent stops its job before its teardown), the
# DHCP release (while the link is there), the admin's delete script (while the job's chain
# and veth are still there for it), firewall, processes left in the namespace, veth, netns,
# address lock.
UNDO_ORDER: tuple[StepName, ...] = (
    StepName.CGROUP,
    StepName.DHCP,
    StepName.DHCP6,
    StepName.SCRIPT,
    StepName.FIREWALL,
    StepName.PROCESSES,
    StepName.VETH,
    StepName.NETNS,
    StepName.ADDRESS,
    StepName.VIEW,
)


class Step(ABC):
    """One resource of one job: ``undo`` is idempotent and raises a LarkError (or OSError)
    only when the resource is still there after it."""

    name: ClassVar[StepName]

    @abstractmethod
    def undo(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """What it is, as ``cleanup`` prints it (``netns lark-x``, ``veth e_x``)."""


@dataclass(frozen=True)
class CgroupStep(Step):
    name: ClassVar[StepName] = StepName.CGROUP
    path: Path

    def undo(self) -> None:
        killed = cgroup.discard(self.path)
        if killed:
            log.info("killed %d process(es) left in cgroup %s (SIGKILL)", killed, self.path)

    def describe(self) -> str:
        return f"cgroup {self.path}"


@dataclass(frozen=True)
class DhcpStep(Step):
    """A dead bridged job's lease, released so the LAN gets the address back now."""

    name: ClassVar[StepName] = StepName.DHCP
    lease: Mapping[str, Any]

    def undo(self) -> None:
        from ..backends.lan.release import (
            send_release,  # (a raw socket: only when there is a lease)
        )

        send_release(dict(self.lease))
        log.info("released DHCP lease %s of a job whose agent died", self.lease.get("address"))

    def describe(self) -> str:
        return f"DHCP lease {self.lease.get('address')}"


@dataclass(frozen=True)
class Dhcp6Step(Step):
    """A dead bridged job's DHCPv6 lease: RELEASEd into its bridge as the job would."""

    name: ClassVar[StepName] = StepName.DHCP6
    lease: Mapping[str, Any]

    def undo(self) -> None:
        from ..backends.lan.job_lease6 import send_release

        try:
            send_release(dict(self.lease))
        except OSError as exc:  # (no bridge to send on: nothing on this node holds it)
            log.warning("cannot release DHCPv6 lease %s: %s", self.describe(), exc)
            return
        log.info("released %s of a job whose agent died", self.describe())

    def describe(self) -> str:
        return f"DHCPv6 lease {', '.join(map(str, self.lease.get('addresses', [])))}"


@dataclass(frozen=True)
class ScriptStep(Step):
    """The admin's delete script, with the arguments, ads and environment of its create."""

    name: ClassVar[StepName] = StepName.SCRIPT
    details: Mapping[str, Any]

    def undo(self) -> None:
        d = self.details
        script = Script("delete", d["path"], float(d["timeout"]))
        stdin = str(d.get("stdin", "")).encode()
        workdir = Path(d["state_dir"]) if d.get("state_dir") else None
        run_script(script, d["args"], stdin, str(d.get("job")), d.get("env", {}), workdir)

    def describe(self) -> str:
        return f"delete script {self.details.get('path')}"


@dataclass(frozen=True)
class FirewallStep(Step):
    """The job's rules in whichever backend holds them (backends/firewall: from the record's
    step, or found by name by the sweeper); ``discard`` is that backend's idempotent one."""

    name: ClassVar[StepName] = StepName.FIREWALL
    kind: str  # for a person: "firewall", "nft inet", "iptables-nft", ...
    chain: str
    discard: Callable[[], None] = field(compare=False)

    def undo(self) -> None:
        self.discard()

    def describe(self) -> str:
        return f"{self.kind} chain {self.chain}"


@dataclass(frozen=True)
class ProcessesStep(Step):
    name: ClassVar[StepName] = StepName.PROCESSES
    netns: str

    def undo(self) -> None:
        killed = kill_netns_processes(self.netns)
        if killed:
            log.info("killed %d process(es) left in %s (TERM, then KILL)", killed, self.netns)

    def describe(self) -> str:
        return f"processes in netns {self.netns}"


@dataclass(frozen=True)
class VethStep(Step):
    name: ClassVar[StepName] = StepName.VETH
    external: str

    def undo(self) -> None:
        netns.discard_link(self.external)

    def describe(self) -> str:
        return f"veth {self.external}"


@dataclass(frozen=True)
class NetnsStep(Step):
    name: ClassVar[StepName] = StepName.NETNS
    netns: str

    def undo(self) -> None:
        netns.discard_netns(self.netns)

    def describe(self) -> str:
        return f"netns {self.netns}"


@dataclass(frozen=True)
class AddressStep(Step):
    """The NAT address pairs' locks (IPv4's, IPv6's); ``release`` is the live agent's own
    (its open locks would otherwise look like someone else's)."""

    name: ClassVar[StepName] = StepName.ADDRESS
    lock: Path | None
    release: Callable[[], None] | None = field(default=None, compare=False)
    lock6: Path | None = None
    proxy6: tuple[str, ipaddress.IPv6Address] | None = None  # (uplink, address): proxy NDP

    def undo(self) -> None:
        if self.proxy6 is not None:
            proxyndp.discard(*self.proxy6)
        if self.release is not None:
            self.release()
            return
        for lock in (self.lock, self.lock6):
            if lock is None:
                continue
            if address.is_locked(lock):
                raise KernelError(f"address lock {lock} is still held by a running agent")
            address.release_lock(lock, None)

    def describe(self) -> str:
        locks = [str(p) for p in (self.lock, self.lock6) if p is not None]
        return f"address lock {' and '.join(locks) or None}"


@dataclass(frozen=True)
class ViewStep(Step):
    """The job's own resolv.conf and hosts (backends/view.py): files in the state dir."""

    name: ClassVar[StepName] = StepName.VIEW
    dir: Path

    def undo(self) -> None:
        view.discard(self.dir)

    def describe(self) -> str:
        return f"job files {self.dir}"


def from_record(
    steps: Mapping[str, Mapping[str, Any]], release_address: Callable[[], None] | None = None
) -> list[Step]:
    """A checked record's steps (record.check), as objects in UNDO_ORDER."""
    found: list[Step] = []
    for name in UNDO_ORDER:
        # (a namespace's processes go with it: killed before the veth and the namespace)
        details = steps.get(StepName.NETNS if name == StepName.PROCESSES else name)
        if details is None:
            continue
        found.append(_build(name, details, release_address))
    return found


def _build(
    name: StepName, d: Mapping[str, Any], release_address: Callable[[], None] | None
) -> Step:
    match name:
        case StepName.CGROUP:
            return CgroupStep(Path(d["path"]))
        case StepName.DHCP:
            return DhcpStep(d)
        case StepName.DHCP6:
            return Dhcp6Step(d)
        case StepName.SCRIPT:
            return ScriptStep(d)
        case StepName.FIREWALL:
            job_firewall = firewall.from_record(d)
            return FirewallStep("firewall", job_firewall.chain, job_firewall.discard)
        case StepName.PROCESSES:
            return ProcessesStep(str(d["netns"]))
        case StepName.VETH:
            return VethStep(str(d["external"]))
        case StepName.NETNS:
            return NetnsStep(str(d["netns"]))
        case StepName.ADDRESS:
            lock = Path(d["lock"]) if d.get("lock") else None
            lock6 = Path(d["lock6"]) if d.get("lock6") else None
            proxy6 = None
            if d.get("proxy6_link") and d.get("proxy6"):
                proxy6 = (str(d["proxy6_link"]), ipaddress.IPv6Address(d["proxy6"]))
            return AddressStep(lock, release_address, lock6, proxy6)
        case StepName.VIEW:
            return ViewStep(Path(d["dir"]))
    raise AssertionError(name)


def in_order(steps: list[Step]) -> list[Step]:
    """``steps`` (found by name, in any order) in UNDO_ORDER."""
    return sorted(steps, key=lambda s: UNDO_ORDER.index(s.name))
