"""The iptables backend behind the firewall interface: a NAT job's chain ``LarkIptableName``
in one build, and in its matching ip6tables build for the job's IPv6 (iptables.py does the
work), with its accept rules in each build whose FORWARD would drop it."""

from __future__ import annotations

import functools
import ipaddress
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ...decide.names import CHAIN_PREFIX
from ...decide.reach import CLOSED, NodeReach
from ...errors import KernelError
from . import iptables, nodefilter, xtables
from .base import (
    IPTABLES_BUILDS,
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
    reach,
    text,
    want,
)
from .forward import UNREADABLE, accept_only, check_build, discard_with_accept

FAMILY = "iptables"  # the record's name for it (IptablesRules.to_record)


@dataclass(frozen=True)
class IptablesJob:
    """``rules``: the job's IPv4 chain (its address None for a job with IPv6 alone, whose
    IPv4 is dropped there); ``rules6``: its ip6tables chain, for a job with IPv6. ``build``
    (``build6``) is the build ``rules.command`` (``rules6.command``) resolves to
    (``iptables`` is whichever the system's alternative names), known to a live agent only:
    where it is among ``accept``, the job's batch there carries its accept rules too."""

    rules: iptables.IptablesRules
    accept: tuple[str, ...] = ()
    build: str | None = None
    rules6: iptables.IptablesRules | None = None
    build6: str | None = None

    @property
    def chain(self) -> str:
        return self.rules.chain

    @property
    def quick(self) -> bool:
        return False  # (iptables-restore is a process)

    def to_record(self) -> dict[str, object]:
        found = {**self.rules.to_record(), "accept": list(self.accept)}
        if self.rules6 is not None:
            found |= {"internal_address6": str(self.rules6.internal_address),
                      "nat6": self.rules6.nat}  # fmt: skip
        return found

    @classmethod
    def from_record(cls, details: Mapping[str, object]) -> IptablesJob:
        command = details.get("command")
        want(command in IPTABLES_BUILDS, f"iptables command {command!r}")
        assert isinstance(command, str)
        chain, veth = text(details, "chain"), text(details, "external_interface")
        internal6 = ipv6(details, "internal_address6")
        nat6 = details.get("nat6", False)
        want(isinstance(nat6, bool), "nat6 is not true or false")
        internal = None  # (a job with IPv6 alone has none; any other job has)
        if internal6 is None or details.get("internal_address") is not None:
            internal = ipv4(details, "internal_address")
        node = reach(details)
        rules = iptables.IptablesRules(command, chain, veth, internal, node)
        rules6 = None
        if internal6 is not None:
            command6 = iptables.command6(command)
            rules6 = iptables.IptablesRules(command6, chain, veth, internal6, node, bool(nat6))
        return cls(rules, builds(details), rules6=rules6)

    def _own(self) -> list[iptables.Wanted]:
        """Its counting chain in each family's build (with its accept rules where that build's
        FORWARD would drop)."""
        found = [iptables.Wanted(self.rules, counting=True, accept=self.build in self.accept)]
        if self.rules6 is not None:
            accept6 = self.build6 in self.accept
            found.append(iptables.Wanted(self.rules6, counting=True, accept=accept6))
        return found

    def _accept_only(self) -> list[iptables.Wanted]:
        r, own = self.rules, (self.build, self.build6)
        others = [b for b in self.accept if b not in own]
        has4 = r.internal_address is not None
        return accept_only(r.chain, r.external_interface, others, has4, self.rules6 is not None)

    def apply(self) -> None:
        for wanted in self._own() + self._accept_only():
            iptables.ensure(wanted)

    def discard(self) -> None:
        own = [functools.partial(iptables.discard_job, w.job) for w in self._own()]
        discard_with_accept(own, self.accept, self.chain)

    def read_counters(self) -> Counters:
        found = iptables.read_counters(self.rules.command, self.chain)
        if self.rules6 is None:
            return found
        return iptables.merge_counters(found, iptables.read_counters(self.rules6.command,
                                                                     self.chain))  # fmt: skip

    def restore(self) -> None:
        self._ensure_own(renew=True)

    def _ensure_own(self, renew: bool) -> None:
        for wanted in self._own():
            iptables.ensure(wanted, renew)

    def checks(self, counting: bool) -> list[Check]:
        """One read per build: the job's own builds in one look (counters of both families,
        chains, jumps, masquerade, their place above others' rules), and each other build
        where only its accept rules are Lark's."""
        own = Check(UNREADABLE, functools.partial(self._look, counting))
        return [own, *(check_build(w, counting) for w in self._accept_only())]

    def _look(self, counting: bool) -> Finding:
        """A chain made anew in one family counts from zero: so do the other family's
        counters then (``renew``), since the published totals are the two summed."""
        readings: list[Counters] = []
        damaged: list[tuple[str, bool]] = []
        for wanted in self._own():
            now, fix = iptables.inspect(wanted)
            readings.append(now)
            if fix.problems:
                damaged.append((f"{'; '.join(fix.problems)} ({wanted.job.command})",
                                fix.resets_counters))  # fmt: skip
        found = None
        if counting:
            found = readings[0] if len(readings) == 1 else iptables.merge_counters(*readings)
        if not damaged:
            return Finding(found)
        renew = any(resets for _, resets in damaged)
        repair: Callable[[], None] = functools.partial(self._ensure_own, renew)
        return Finding(found, Damage("; ".join(why for why, _ in damaged), renew, repair))

    def set_addresses(self, bindings: Sequence[Binding]) -> None:
        """(The job's address is in its rules.)"""

    def without_nat_source(self) -> JobFirewall:
        return self  # (its MASQUERADE rules are the job's own, named by its chain)


@dataclass
class Driver:
    """LARK_FIREWALL_BACKEND iptables (NAT mode); ``survey`` resolves the builds."""

    command: str
    build: str | None = None
    build6: str | None = None
    kernel_features: tuple[str, ...] = ()

    def check_available(self) -> None:
        iptables.check_installed(self.command)

    def ipv6_unavailable(self) -> str | None:
        return iptables.missing6(self.command)

    def survey(
        self, local_network: str, ipv4: bool = True, ipv6: bool = False
    ) -> nodefilter.NodeFilter:
        node = nodefilter.inspect_node(local_network, ipv4, ipv6)
        self.build = nodefilter.resolve_build(self.command)
        if ipv6:
            self.build6 = nodefilter.resolve_build(iptables.command6(self.command))
        return node

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
        assert internal_address or internal_address6, "an iptables job's firewall needs an address"
        rules = iptables.IptablesRules(
            self.command, chain, external_interface, internal_address, reach
        )
        rules6 = None
        if internal_address6 is not None:
            command6 = iptables.command6(self.command)
            rules6 = iptables.IptablesRules(
                command6, chain, external_interface, internal_address6, reach, nat6
            )
        return IptablesJob(rules, tuple(accept), self.build, rules6, self.build6)


def leftovers() -> list[Leftover]:
    """Jobs with anything in any build of either family: a chain, a masquerade rule (a NAT
    or NAT66 source) or accept rules in LARK-FORWARD (found by their comments). Read with
    iptables-save (ip6tables-save), which lists only tables that exist: a sweep creates no
    legacy table on a node without one."""
    found: list[Leftover] = []
    for command in (*iptables.BUILDS, *iptables.BUILDS6):
        if shutil.which(f"{command}-save") is None:
            continue
        try:
            tables = xtables.read(command, f"read {command} rules")
        except KernelError:
            continue
        filt = tables.get("filter") or xtables.Table("filter")
        nat = tables.get("nat") or xtables.Table("nat")
        chains = {c for c in filt.chains if c.startswith(CHAIN_PREFIX)}
        chains |= {r.comment for r in filt.rules(iptables.ACCEPT_CHAIN)}
        chains |= {r.comment for r in nat.rules("POSTROUTING") if r.target == "MASQUERADE"}
        for chain in sorted(c for c in chains if c.startswith(CHAIN_PREFIX)):
            discard = functools.partial(iptables.discard, command, chain)
            found.append(Leftover(command, chain, discard))
    return found
