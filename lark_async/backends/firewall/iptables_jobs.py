"""The iptables backend behind the firewall interface: a NAT job's chain ``LarkIptableName``
in one build (iptables.py does the work), with its accept rules in each build whose
FORWARD would drop it."""

from __future__ import annotations

import functools
import ipaddress
import shutil
from collections.abc import Mapping, Sequence
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
    JobFirewall,
    Leftover,
    builds,
    ipv4,
    reach,
    text,
    want,
)
from .forward import accept_only, check_build, discard_with_accept

FAMILY = "iptables"  # the record's name for it (IptablesRules.to_record)


@dataclass(frozen=True)
class IptablesJob:
    """``build`` is the build ``rules.command`` resolves to (``iptables`` is whichever the
    system's alternative names), known to a live agent only: where it is among ``accept``,
    the job's one batch there carries its accept rules too."""

    rules: iptables.IptablesRules
    accept: tuple[str, ...] = ()
    build: str | None = None

    @property
    def chain(self) -> str:
        return self.rules.chain

    @property
    def quick(self) -> bool:
        return False  # (iptables-restore is a process)

    def to_record(self) -> dict[str, object]:
        return {**self.rules.to_record(), "accept": list(self.accept)}

    @classmethod
    def from_record(cls, details: Mapping[str, object]) -> IptablesJob:
        command = details.get("command")
        want(command in IPTABLES_BUILDS, f"iptables command {command!r}")
        rules = iptables.IptablesRules(
            str(command),
            text(details, "chain"),
            text(details, "external_interface"),
            ipv4(details, "internal_address"),
            reach(details),
        )
        return cls(rules, builds(details))

    def _counting(self) -> iptables.Wanted:
        return iptables.Wanted(self.rules, counting=True, accept=self.build in self.accept)

    def _accept_only(self) -> list[iptables.Wanted]:
        r, others = self.rules, [b for b in self.accept if b != self.build]
        return accept_only(r.chain, r.external_interface, r.internal_address, others)

    def apply(self) -> None:
        iptables.apply_job(self.rules, self.build in self.accept)
        for wanted in self._accept_only():
            iptables.ensure(wanted)

    def discard(self) -> None:
        discard_with_accept(
            functools.partial(iptables.discard_job, self.rules), self.accept, self.chain
        )

    def read_counters(self) -> Counters:
        return iptables.read_counters(self.rules.command, self.chain)

    def restore(self) -> None:
        iptables.ensure(self._counting())

    def checks(self, counting: bool) -> list[Check]:
        """One read per build: the job's own (counters, chain, jumps, masquerade, its place
        above others' rules) and each other build where only its accept rules are Lark's."""
        own = check_build(self._counting(), counting)
        return [own, *(check_build(w, counting) for w in self._accept_only())]

    def set_addresses(self, bindings: Sequence[Binding]) -> None:
        """(The job's address is in its rules.)"""

    def without_nat_source(self) -> JobFirewall:
        return self  # (its MASQUERADE rule is the job's own, named by its chain)


@dataclass
class Driver:
    """LARK_FIREWALL_BACKEND iptables (NAT mode); ``survey`` resolves the build."""

    command: str
    build: str | None = None
    kernel_features: tuple[str, ...] = ()

    def check_available(self) -> None:
        iptables.check_installed(self.command)

    def survey(self, local_network: str) -> nodefilter.NodeFilter:
        node = nodefilter.inspect_node(local_network)
        self.build = nodefilter.resolve_build(self.command)
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
        assert internal_address is not None, "an iptables job's firewall needs its address"
        assert internal_address6 is None, "the iptables backend has no IPv6 (plan.py)"
        rules = iptables.IptablesRules(
            self.command, chain, external_interface, internal_address, reach
        )
        return IptablesJob(rules, tuple(accept), self.build)


def leftovers() -> list[Leftover]:
    """Jobs with anything in either build: a chain, a masquerade rule or accept rules in
    LARK-FORWARD (found by their comments). Read with iptables-save, which lists only
    tables that exist: a sweep creates no legacy table on a node without one."""
    found: list[Leftover] = []
    for command in iptables.BUILDS:
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
