"""The nftables backend behind the firewall interface: a NAT job in ``inet lark``, a bridged
job in ``bridge lark`` (nft.py does the work; this says what a poll, an undo and a sweep
ask of it)."""

from __future__ import annotations

import dataclasses
import errno
import functools
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ...decide.names import CHAIN_PREFIX, external_interface
from ...decide.reach import CLOSED, NodeReach
from ...errors import LarkError
from . import iptables, nft, nodefilter
from .base import (
    Binding,
    Check,
    Counters,
    Damage,
    Finding,
    JobFirewall,
    Leftover,
    builds,
    ipv4,
    ipv6,
    mac,
    reach,
    text,
    want,
)
from .forward import accept_only, check_build, discard_with_accept

COUNTERS_UNREADABLE = "counters unavailable, keeping the last values"


def _read(chain: str, family: str) -> Counters:
    """A chain that is gone reads empty; told by errno (ENOENT), whatever the words."""
    try:
        return nft.read_counters(chain, family)
    except LarkError as exc:
        if getattr(exc.__cause__, "errno", None) == errno.ENOENT:
            return {}
        raise


def _counter_check(chain: str, family: str, restore: Callable[[], None]) -> Check:
    """The counters; a chain gone or emptied (its Outgoing rule missing) is put back."""

    def look() -> Finding:
        now = _read(chain, family)
        damage = None
        if nft.OUTGOING not in now:
            damage = Damage(f"the job's firewall chain {chain} is gone or empty", True, restore)
        return Finding(now, damage)

    return Check(COUNTERS_UNREADABLE, look)


@dataclass(frozen=True)
class NatJob:
    """A NAT job in ``inet lark``: its chain, map element and NAT source, and its accept
    rules in the iptables builds whose FORWARD would drop it."""

    rules: nft.JobRules
    accept: tuple[str, ...] = ()

    @property
    def chain(self) -> str:
        return self.rules.chain

    @property
    def quick(self) -> bool:
        return not self.accept  # (an iptables build's batch is a process: not inline)

    def to_record(self) -> dict[str, object]:
        return {**self.rules.to_record(), "accept": list(self.accept)}

    @classmethod
    def from_record(cls, details: Mapping[str, object]) -> NatJob:
        internal = None
        if details.get("internal_address") is not None:
            internal = ipv4(details, "internal_address")
        nat, nat6 = details.get("nat", False), details.get("nat6", False)
        want(isinstance(nat, bool), "nat is not true or false")
        want(isinstance(nat6, bool), "nat6 is not true or false")
        rules = nft.JobRules(
            text(details, "chain"),
            text(details, "external_interface"),
            internal,
            bool(nat),
            reach(details),
            ipv6(details, "internal_address6"),
            bool(nat6),
        )
        return cls(rules, builds(details))

    def _accept_only(self) -> list[iptables.Wanted]:
        r = self.rules
        return accept_only(
            r.chain,
            r.external_interface,
            self.accept,
            r.internal_address is not None,
            r.internal_address6 is not None,
        )

    def apply(self) -> None:
        nft.apply_job(self.rules)
        for wanted in self._accept_only():
            iptables.ensure(wanted)

    def discard(self) -> None:
        discard_with_accept([functools.partial(nft.discard_job, self.rules)], self.accept,
                            self.chain)  # fmt: skip

    def read_counters(self) -> Counters:
        return _read(self.chain, nft.FAMILY)

    def restore(self) -> None:
        nft.discard_job(self.rules)
        nft.apply_job(self.rules)

    def checks(self, counting: bool) -> list[Check]:
        """The counters (the chain put back when gone), the NAT source (a sweeper or an
        admin may take the address out of ``nat_sources`` alone: the job's traffic would
        leave with an address nobody answers), the accept rules of each build."""
        found = [_counter_check(self.chain, nft.FAMILY, self.restore)] if counting else []
        r = self.rules
        sources = [(r.nat, r.internal_address), (r.nat6, r.internal_address6)]
        for nat, addr in sources:
            if nat and addr is not None:
                found.append(Check("cannot check the NAT source", self._nat_source_look(addr)))
        return found + [check_build(w, counting) for w in self._accept_only()]

    def _nat_source_look(
        self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> Callable[[], Finding]:
        def look() -> Finding:
            if nft.has_nat_source(addr):
                return Finding()
            return Finding(damage=Damage(f"the job's NAT source {addr} is gone", True,
                                         self.restore))  # fmt: skip

        return look

    def set_addresses(self, bindings: Sequence[Binding]) -> None:
        """(The job's address is in its rules.)"""

    def without_nat_source(self) -> JobFirewall:
        return dataclasses.replace(
            self, rules=dataclasses.replace(self.rules, nat=False, nat6=False)
        )


@dataclass(frozen=True)
class BridgeJob:
    """A bridged job in ``bridge lark``: its chain, port map element and address set."""

    rules: nft.BridgeRules

    @property
    def chain(self) -> str:
        return self.rules.chain

    @property
    def quick(self) -> bool:
        return False  # (libnftables parses the job's rules: not inline)

    def to_record(self) -> dict[str, object]:
        return self.rules.to_record()

    @classmethod
    def from_record(cls, details: Mapping[str, object]) -> BridgeJob:
        builds(details)  # (checked: a bridged job has none, its frames never meet FORWARD)
        chain, port = text(details, "chain"), text(details, "external_interface")
        ipv6 = details.get("ipv6", False)
        want(isinstance(ipv6, bool), "ipv6 is not true or false")
        return cls(nft.BridgeRules(chain, port, mac(details, "mac"), bool(ipv6)))

    def apply(self) -> None:
        nft.apply_bridge_job(self.rules)

    def discard(self) -> None:
        nft.discard_bridge_job(self.rules)

    def read_counters(self) -> Counters:
        return _read(self.chain, nft.BRIDGE_FAMILY)

    def restore(self) -> None:
        """(The addresses come back with ``set_addresses``: the lease is the caller's.)"""
        nft.discard_bridge_job(self.rules)
        nft.apply_bridge_job(self.rules)

    def checks(self, counting: bool) -> list[Check]:
        return [_counter_check(self.chain, nft.BRIDGE_FAMILY, self.restore)] if counting else []

    def set_addresses(self, bindings: Sequence[Binding]) -> None:
        nft.set_bridge_addresses(self.rules, list(bindings))

    def set_addresses6(self, bindings: Sequence[nft.Binding6]) -> None:
        """The job's IPv6 addresses on the LAN (link-local, SLAAC, leased)."""
        nft.set_bridge_addresses6(self.rules, list(bindings))

    def without_nat_source(self) -> JobFirewall:
        return self


@dataclass(frozen=True)
class NatDriver:
    """LARK_FIREWALL_BACKEND nftables, NAT mode."""

    kernel_features: tuple[str, ...] = ("nftables",)

    def check_available(self) -> None:
        nft.check_available()

    def ipv6_unavailable(self) -> str | None:
        return None  # (the inet table: both families in one)

    def survey(
        self, local_network: str, ipv4: bool = True, ipv6: bool = False
    ) -> nodefilter.NodeFilter:
        return nodefilter.inspect_node(local_network, ipv4, ipv6)

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
        rules = nft.JobRules(
            chain, external_interface, internal_address, True, reach, internal_address6, nat6
        )
        return NatJob(rules, tuple(accept))


@dataclass(frozen=True)
class BridgeDriver:
    """Bridge mode (nftables only: bridged frames never reach iptables)."""

    kernel_features: tuple[str, ...] = ("nftables",)

    def check_available(self) -> None:
        nft.check_available()

    def ipv6_unavailable(self) -> str | None:
        return None  # (the inet table: both families in one)

    def survey(
        self, local_network: str, ipv4: bool = True, ipv6: bool = False
    ) -> nodefilter.NodeFilter:
        return nodefilter.NodeFilter()  # (the node's FORWARD never sees bridged frames)

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
        """(``reach``: a bridged job reaches the node as a LAN host does, by the bridge;
        ``ipv6``: the job has IPv6 on the LAN, its addresses set as the kernel forms them,
        ``set_addresses6``.)"""
        assert mac is not None, "a bridged job's firewall needs its MAC"
        return BridgeJob(nft.BridgeRules(chain, external_interface, mac, ipv6))


def leftovers() -> list[Leftover]:
    """``LARK_*`` chains of both tables, each with the removal of all of its job there."""
    found: list[Leftover] = []
    for family in (nft.FAMILY, nft.BRIDGE_FAMILY):
        for chain in re.findall(rf"chain ({CHAIN_PREFIX}\S+) {{", nft.dump_table(family)):
            ifname = external_interface(chain.removeprefix(CHAIN_PREFIX))
            if family == nft.FAMILY:
                inet = NatJob(nft.JobRules(chain, ifname, None, nat=False))
                found.append(Leftover("nft inet", chain, inet.discard))
            else:
                bridged = BridgeJob(nft.BridgeRules(chain, ifname, ""))
                found.append(Leftover("nft bridge", chain, bridged.discard))
    return found


def nat_sources() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses in ``nat_sources`` and ``nat_sources6`` (the sweeper finds whose by
    their address locks)."""
    dumped = nft.dump_table(nft.FAMILY)
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in (nft.NAT_SET, nft.NAT_SET6):
        sources = re.search(rf"set {name} {{[^}}]*?elements = {{ ([^}}]*) }}", dumped)
        items = sources.group(1).replace("\n", " ").split(",") if sources else []
        found += [ipaddress.ip_address(item.strip()) for item in items if item.strip()]
    return found


def discard_nat_source(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    nft.discard_nat_source(addr)
