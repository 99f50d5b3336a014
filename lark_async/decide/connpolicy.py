"""Where a job may connect: the admin's rules, a job's narrower allow-list, one decision.

Pure (sans-IO): the queue reader (``connguard``) feeds it the first packet of
each new connection and answers with what it returns.

An entry (entries are separated by commas or new lines)::

    allow|deny [tcp|udp|icmp|any] ADDRESS[/PREFIX][:PORT[-PORT]]

The admin's list (``LARK_CONNECTION_POLICY`` / ``LarkConnectionPolicy``) is
read top down, the first matching entry decides, and a connection no entry
matches gets ``LARK_CONNECTION_DEFAULT`` (deny unless set). A job may narrow
it with ``LarkAllowedConnections``: entries without a verdict (or with
``allow``), each of which must lie inside what the admin allows; the job
then gets only those.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

PROTOCOLS: dict[str, int | None] = {"tcp": 6, "udp": 17, "icmp": 1, "any": None}
PROTOCOL_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}
_ENTRY = re.compile(
    r"^(?:(?P<verdict>\w+)\s+)??(?:(?P<proto>tcp|udp|icmp|any)\s+)?"
    r"(?P<net>[0-9.]+(?:/\d+)?)(?::(?P<ports>\d+(?:-\d+)?))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Rule:
    allow: bool
    proto: int | None  # None: any protocol
    network: ipaddress.IPv4Network
    ports: tuple[int, int] | None  # None: any port (and protocols without ports)
    text: str

    def matches(self, proto: int, dst: ipaddress.IPv4Address, port: int | None) -> bool:
        if self.proto is not None and self.proto != proto:
            return False
        if dst not in self.network:
            return False
        if self.ports is None:
            return True
        return port is not None and self.ports[0] <= port <= self.ports[1]

    def covers(self, other: Rule) -> bool:
        """Every connection ``other`` matches, this matches too."""
        if self.proto is not None and self.proto != other.proto:
            return False
        if not other.network.subnet_of(self.network):
            return False
        if self.ports is None:
            return True
        return other.ports is not None and (
            self.ports[0] <= other.ports[0] and other.ports[1] <= self.ports[1]
        )

    def overlaps(self, other: Rule) -> bool:
        if None not in (self.proto, other.proto) and self.proto != other.proto:
            return False
        if not self.network.overlaps(other.network):
            return False
        if self.ports is None or other.ports is None:
            return True
        return self.ports[0] <= other.ports[1] and other.ports[0] <= self.ports[1]


def _entries(text: str) -> list[str]:
    return [e.strip() for e in re.split(r"[,\n]", text) if e.strip()]


def parse_rule(entry: str, *, job: bool = False) -> Rule:
    """One entry; ValueError says what is wrong with it."""
    m = _ENTRY.match(" ".join(entry.split()))
    if m is None:
        raise ValueError("is not [allow|deny] [tcp|udp|icmp|any] ADDRESS[/PREFIX][:PORT[-PORT]]")
    verdict = (m["verdict"] or ("allow" if job else "")).lower()
    if verdict not in ("allow", "deny"):
        raise ValueError(
            f"unknown verdict {verdict!r} (allow or deny)" if verdict else "needs allow or deny"
        )
    if job and verdict != "allow":
        raise ValueError("a job may only list what it wants allowed")
    try:
        network = ipaddress.IPv4Network(m["net"], strict=False)
    except ValueError as exc:
        raise ValueError(f"{m['net']!r} is not an IPv4 address or network ({exc})") from None
    proto = PROTOCOLS[(m["proto"] or "any").lower()]
    ports = None
    if m["ports"]:
        lo, _, hi = m["ports"].partition("-")
        ports = (int(lo), int(hi or lo))
        if not (0 < ports[0] <= ports[1] <= 65535):
            raise ValueError(f"port range {m['ports']} is not within 1-65535, low to high")
        if proto == PROTOCOLS["icmp"]:
            raise ValueError("icmp has no ports")
    return Rule(verdict == "allow", proto, network, ports, " ".join(entry.split()))


def parse_rules(text: str, *, job: bool = False) -> tuple[Rule, ...]:
    rules = []
    for n, entry in enumerate(_entries(text), 1):
        try:
            rules.append(parse_rule(entry, job=job))
        except ValueError as exc:
            raise ValueError(f"entry {n} {entry!r}: {exc}") from None
    if not rules:
        raise ValueError("has no entries")
    return tuple(rules)


@dataclass(frozen=True)
class Decision:
    allow: bool
    rule: str  # the entry that matched, or "default allow/deny", or the job's refusal


@dataclass(frozen=True)
class ConnectionPolicy:
    rules: tuple[Rule, ...]
    default_allow: bool
    job_rules: tuple[Rule, ...] | None = None  # the job's own, narrower allow-list

    def _admin(self, proto: int, dst: ipaddress.IPv4Address, port: int | None) -> Decision:
        for rule in self.rules:
            if rule.matches(proto, dst, port):
                return Decision(rule.allow, rule.text)
        return Decision(self.default_allow, f"default {'allow' if self.default_allow else 'deny'}")

    def decide(self, proto: int, dst: ipaddress.IPv4Address, port: int | None) -> Decision:
        admin = self._admin(proto, dst, port)
        if not admin.allow or self.job_rules is None:
            return admin
        for rule in self.job_rules:
            if rule.matches(proto, dst, port):
                return Decision(True, f"job: {rule.text}")
        return Decision(False, "job: not in LarkAllowedConnections")

    def narrowed(self, job_rules: tuple[Rule, ...]) -> ConnectionPolicy:
        """This policy limited to the job's entries; ValueError names an entry that asks
        for more than this policy allows (conservatively: one admin entry must allow all
        of it, with no deny before it that touches it)."""
        for n, wanted in enumerate(job_rules, 1):
            if not self._allows_all(wanted):
                raise ValueError(
                    f"entry {n} {wanted.text!r} asks for more than this node's connection "
                    "policy allows"
                )
        return ConnectionPolicy(self.rules, self.default_allow, job_rules)

    def _allows_all(self, wanted: Rule) -> bool:
        for rule in self.rules:
            if rule.covers(wanted):
                return rule.allow
            if rule.overlaps(wanted) and not rule.allow:
                return False
        return self.default_allow and not any(r.overlaps(wanted) for r in self.rules)


def admin_policy(rules: tuple[Rule, ...] | None, default: str) -> ConnectionPolicy:
    """The admin's policy; with no rules an open one, which a job's own list may narrow."""
    if rules is None:
        return ConnectionPolicy((), True)
    return ConnectionPolicy(rules, default == "allow")


def job_policy(
    rules: tuple[Rule, ...] | None, default: str, job_rules: tuple[Rule, ...] | None
) -> ConnectionPolicy | None:
    """What the job's queue enforces; None when neither side asked for one (no queue)."""
    if rules is None and job_rules is None:
        return None
    policy = admin_policy(rules, default)
    return policy.narrowed(job_rules) if job_rules is not None else policy


@dataclass(frozen=True)
class Flow:
    proto: int
    source: ipaddress.IPv4Address
    destination: ipaddress.IPv4Address
    port: int | None

    def describe(self) -> str:
        name = PROTOCOL_NAMES.get(self.proto, str(self.proto))
        return (
            f"{self.destination}:{self.port}/{name}" if self.port else f"{self.destination}/{name}"
        )


def parse_flow(packet: bytes) -> Flow | None:
    """The first packet of a connection, as the queue hands it over (IPv4 header on);
    None for anything else, which the caller refuses."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    src = ipaddress.IPv4Address(packet[12:16])
    dst = ipaddress.IPv4Address(packet[16:20])
    port = None
    if proto in (6, 17):
        if len(packet) < ihl + 4 or ihl < 20:
            return None
        (port,) = struct.unpack_from("!H", packet, ihl + 2)
    return Flow(proto, src, dst, port)
