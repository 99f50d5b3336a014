"""What a firewall backend offers: one interface, so nothing outside this package asks which.

netavark's ``FirewallDriver`` is the model: the driver is chosen once (for a live job
from its plan, for cleanup and status from the state record's firewall step), and
the supervisor, the undo, ``status`` and the sweeper speak only to this interface.
Undo is CNI's DEL: whatever of the job is there goes, absence is success.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ...decide.reach import CLOSED, NodeReach
from ...errors import ResourceError

if TYPE_CHECKING:
    from .nodefilter import NodeFilter

Counters = dict[str, tuple[int, int]]  # a counting rule's comment -> (bytes, packets)
Binding = tuple[ipaddress.IPv4Address, float | None]  # an address, seconds it stays (None: ever)
IPTABLES_BUILDS = ("iptables", "iptables-nft", "iptables-legacy")  # LARK_IPTABLES's
# the builds whose FORWARD may accept a job's traffic (``survey``): both families'
ACCEPT_BUILDS = (*IPTABLES_BUILDS, "ip6tables-nft", "ip6tables-legacy")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class FirewallRecordError(ResourceError):
    """A state record's firewall step naming no backend Lark has, or not in that backend's
    shape: said in one line, so a damaged record is reported, never a traceback."""


@dataclass(frozen=True)
class Damage:
    """Part of the job's rules that someone flushed, emptied or put below their own."""

    why: str  # for the log: what is gone or out of place
    resets_counters: bool  # the repair makes rules anew (counting from zero), not just moves them
    repair: Callable[[], object]  # blocking: run in a thread


@dataclass(frozen=True)
class Finding:
    """What one look of a poll saw."""

    counters: Counters | None = None  # None: this look counts nothing (or accounting is off)
    damage: Damage | None = None


@dataclass(frozen=True)
class Check:
    """One look a poll takes at the job's firewall; ``look`` blocks (a thread runs it) and
    raises a LarkError when the firewall cannot be read, which the log words as
    ``unreadable``."""

    unreadable: str
    look: Callable[[], Finding]


@dataclass(frozen=True)
class Leftover:
    """Something of a job found in the firewall by name alone (the sweeper decides whose)."""

    kind: str  # for a person: "nft inet", "iptables-nft", ... (its chain)
    chain: str
    discard: Callable[[], None]


class JobFirewall(Protocol):
    """One job's rules in one backend. What touches the kernel blocks: the supervisor runs
    it in a thread (``apply`` inline when ``quick``)."""

    @property
    def chain(self) -> str: ...

    @property
    def quick(self) -> bool:
        """``apply`` is one netlink transaction: cheaper inline than a thread hop."""
        ...

    def to_record(self) -> dict[str, object]:
        """The state record's firewall step (``from_record`` reads it back)."""
        ...

    def apply(self) -> None:
        """The job's rules, and its way through a node FORWARD that would drop it."""
        ...

    def discard(self) -> None:
        """Idempotent: whatever of the job is there goes; every part is tried, the first
        failure is raised."""
        ...

    def read_counters(self) -> Counters:
        """Every commented counter of the job's chain (admin rules too); empty when gone."""
        ...

    def restore(self) -> None:
        """After a flush or a replacement: the job's rules put back whole."""
        ...

    def checks(self, counting: bool) -> list[Check]:
        """What each poll looks at, in order; ``counting``: the counters are wanted."""
        ...

    def set_addresses(self, bindings: Sequence[Binding]) -> None:
        """The source addresses the job may use, where they are kept apart from its rules
        (a bridged job's lease); a no-op where the rules name the address."""
        ...

    def without_nat_source(self) -> JobFirewall:
        """The same, but leaving its NAT source: another job holds that address now."""
        ...


class FirewallDriver(Protocol):
    """A backend for live jobs, chosen once from the plan."""

    @property
    def kernel_features(self) -> tuple[str, ...]:
        """What the kernel must offer (backends/netlink/probe.py names)."""
        ...

    def check_available(self) -> None:
        """Before anything is created: the backend's library or programs are installed."""
        ...

    def ipv6_unavailable(self) -> str | None:
        """Why this backend cannot give a NAT job IPv6 on this node (a program it needs is
        not installed), or None when it can."""
        ...

    def survey(self, local_network: str, ipv4: bool = True, ipv6: bool = False) -> NodeFilter:
        """Blocking, before a NAT job's rules: where the node's own filter would drop them
        (the builds of the families the job has: iptables for ``ipv4``, ip6tables for
        ``ipv6``)."""
        ...

    def job(
        self,
        chain: str,
        external_interface: str,
        internal_address: ipaddress.IPv4Address | None = None,
        mac: str | None = None,
        accept: Sequence[str] = (),
        reach: NodeReach = CLOSED,
        internal_address6: ipaddress.IPv6Address | None = None,
        nat6: bool = False,
        ipv6: bool = False,
    ) -> JobFirewall:
        """The job's firewall (not yet applied); ``accept``: the iptables builds whose
        FORWARD needs the job's traffic accepted (``survey``); ``reach``: what of the node
        a NAT job may reach (the rest of the node is closed to it; a bridged job is a LAN
        host like any other, its traffic to the node never crossing a NAT job's rules);
        ``internal_address6``: a NAT job's IPv6, masqueraded when ``nat6``; ``ipv6``: a
        bridged job's IPv6 on the LAN (SLAAC), guarded."""
        ...


# -- reading a record's firewall step: every value checked, one clear line when wrong ------


def want(ok: bool, what: str) -> None:
    if not ok:
        raise FirewallRecordError(f"firewall step: {what}")


def text(details: Mapping[str, object], key: str) -> str:
    value = details.get(key)
    want(isinstance(value, str), f"{key} is not a string")
    assert isinstance(value, str)
    return value


def ipv4(details: Mapping[str, object], key: str) -> ipaddress.IPv4Address:
    value = text(details, key)
    try:
        return ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise FirewallRecordError(f"firewall step: {key} {value!r} is not an IPv4 address") from exc


def ipv6(details: Mapping[str, object], key: str) -> ipaddress.IPv6Address | None:
    """An IPv6 address, or None when the record has none (a job without IPv6)."""
    if details.get(key) is None:
        return None
    value = text(details, key)
    try:
        return ipaddress.IPv6Address(value)
    except ValueError as exc:
        raise FirewallRecordError(f"firewall step: {key} {value!r} is not an IPv6 address") from exc


def mac(details: Mapping[str, object], key: str) -> str:
    value = text(details, key)
    want(bool(_MAC.fullmatch(value)), f"{key} {value!r} is not a MAC address")
    return value


def reach(details: Mapping[str, object]) -> NodeReach:
    """What of the node the job may reach; a record from before there was any (only ever
    discarded) reads as closed."""
    value = details.get("reach")
    if value is None:
        return CLOSED
    try:
        return NodeReach.from_record(value)
    except ValueError as exc:
        raise FirewallRecordError(f"firewall step: reach {exc}") from None


def builds(details: Mapping[str, object]) -> tuple[str, ...]:
    """The iptables and ip6tables builds whose FORWARD accepts the job (``accept``; none
    when absent)."""
    value = details.get("accept", [])
    ok = isinstance(value, list) and all(b in ACCEPT_BUILDS for b in value)
    want(ok, f"accepting iptables builds {value!r}")
    assert isinstance(value, list)
    return tuple(value)
