"""Where a job may connect: the admin's rules, a job's narrower allow-list, one decision.

Pure (sans-IO): the queue reader (``connguard``) feeds it the first packet of
each new connection (``firstpacket``) and answers with what it returns.

An entry (entries are separated by commas or new lines)::

    allow|deny [tcp|udp|icmp|any] ADDRESS[/PREFIX][:PORT[-PORT]]
    allow|deny [tcp|udp|icmp|any] [IPV6-ADDRESS[/PREFIX]][:PORT[-PORT]]

An IPv6 address or prefix is in brackets, as in a URL (``[2001:db8::/32]:443``,
``[::1]:53``); ``icmp`` is ICMPv6 towards IPv6 destinations. One list covers
both families: a connection is matched against the entries of its own family
(``0.0.0.0/0`` is every IPv4 destination, ``[::/0]`` every IPv6 one), so with
the default ``deny`` an IPv4-only list denies all IPv6 and IPv6 is never a way
around it. An IPv6 destination that stands for an IPv4 one is decided as that
IPv4 destination too: an IPv4-mapped address (``::ffff:10.0.0.1``) as its IPv4
address only, and one in the NAT64 well-known prefix ``64:ff9b::/96`` (RFC 6052)
needs the IPv6 entries and the admin's IPv4 ones for the address it embeds to allow
it.

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
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ICMP, ICMPV6 = 1, 58
PROTOCOLS: dict[str, int | None] = {"tcp": 6, "udp": 17, "icmp": ICMP, "any": None}
PROTOCOL_NAMES = {6: "tcp", 17: "udp", ICMP: "icmp", ICMPV6: "icmpv6"}
MAX_ENTRY_CHARS = 100  # the longest sensible entry is 66 (a whole IPv6 address, a port range)
MAX_JOB_ENTRIES = 256  # a job's list is checked against every admin entry: bounded work
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 2.1: the IPv4 address in its last 32 bits
_SYNTAX = "is not [allow|deny] [tcp|udp|icmp|any] ADDRESS[/PREFIX][:PORT[-PORT]]"
_ENTRY = re.compile(
    r"^(?:(?P<verdict>\w+)\s+)??(?:(?P<proto>tcp|udp|icmp|any)\s+)?"
    r"(?:(?P<net4>[0-9.]+(?:/[0-9]+)?)|\[(?P<net6>[^\[\]\s]+)\])"
    r"(?::(?P<ports>[0-9]+(?:-[0-9]+)?))?$",
    re.IGNORECASE | re.ASCII,
)
_IPV6_TEXT = re.compile(r"^[0-9a-f:.]+(?:/[0-9]+)?$", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class Rule:
    allow: bool
    proto: int | None  # None: any protocol; ICMP: ICMP or ICMPv6, as the network's family
    network: Network
    ports: tuple[int, int] | None  # None: any port (and protocols without ports)
    text: str

    def matches(self, proto: int, dst: Address, port: int | None) -> bool:
        if self.proto is not None and self.proto != (ICMP if proto == ICMPV6 else proto):
            return False
        if dst not in self.network:  # (never for the other family's addresses)
            return False
        if self.ports is None:
            return True
        return port is not None and self.ports[0] <= port <= self.ports[1]

    def covers(self, other: Rule) -> bool:
        """Every connection ``other`` matches, this matches too."""
        if self.proto is not None and self.proto != other.proto:
            return False
        if self.network.version != other.network.version:
            return False
        if not other.network.subnet_of(self.network):  # type: ignore[arg-type]
            return False
        if self.ports is None:
            return True
        return other.ports is not None and (
            self.ports[0] <= other.ports[0] and other.ports[1] <= self.ports[1]
        )

    def overlaps(self, other: Rule) -> bool:
        if None not in (self.proto, other.proto) and self.proto != other.proto:
            return False
        if not self.network.overlaps(other.network):  # (False across families)
            return False
        if self.ports is None or other.ports is None:
            return True
        return self.ports[0] <= other.ports[1] and other.ports[0] <= self.ports[1]


def _entries(text: str) -> list[str]:
    return [e.strip() for e in re.split(r"[,\n]", text) if e.strip()]


def _shown(entry: str) -> str:
    return entry if len(entry) <= 60 else entry[:57] + "..."


def parse_rule(entry: str, *, job: bool = False) -> Rule:
    """One entry; ValueError says what is wrong with it."""
    text = " ".join(entry.split())
    if len(text) > MAX_ENTRY_CHARS:
        raise ValueError(f"is longer than {MAX_ENTRY_CHARS} characters")
    m = _ENTRY.match(text)
    if m is None:
        target = text.rsplit(" ", 1)[-1]
        if target.count(":") > 1 and "[" not in target:
            raise ValueError("an IPv6 address goes in brackets: [ADDRESS/PREFIX]:PORT")
        raise ValueError(_SYNTAX)
    verdict = (m["verdict"] or ("allow" if job else "")).lower()
    if verdict not in ("allow", "deny"):
        raise ValueError(
            f"unknown verdict {verdict!r} (allow or deny)" if verdict else "needs allow or deny"
        )
    if job and verdict != "allow":
        raise ValueError("a job may only list what it wants allowed")
    network = _network(m["net4"], m["net6"])
    proto = PROTOCOLS[(m["proto"] or "any").lower()]
    ports = None
    if m["ports"]:
        lo, _, hi = m["ports"].partition("-")
        ports = (int(lo), int(hi or lo))
        if not (0 < ports[0] <= ports[1] <= 65535):
            raise ValueError(f"port range {m['ports']} is not within 1-65535, low to high")
        if proto == ICMP:
            raise ValueError("icmp has no ports")
    return Rule(verdict == "allow", proto, network, ports, text)


def _network(net4: str | None, net6: str | None) -> Network:
    if net6 is None:
        assert net4 is not None
        try:
            return ipaddress.IPv4Network(net4, strict=False)
        except ValueError as exc:
            raise ValueError(f"{net4!r} is not an IPv4 address or network ({exc})") from None
    if "%" in net6:
        raise ValueError(f"[{net6}]: a zone (%...) names a link, which a policy cannot")
    if ":" not in net6:
        raise ValueError(f"[{net6}]: brackets are for IPv6; write an IPv4 address without")
    if not _IPV6_TEXT.match(net6):
        raise ValueError(f"[{net6}] is not an IPv6 address or network")
    try:
        network = ipaddress.IPv6Network(net6, strict=False)
    except ValueError as exc:
        raise ValueError(f"[{net6}] is not an IPv6 address or network ({exc})") from None
    mapped = network.network_address.ipv4_mapped
    if mapped is not None and network.prefixlen >= 96:
        raise ValueError(
            f"[{net6}] is IPv4-mapped: write {mapped}"
            + (f"/{network.prefixlen - 96}" if network.prefixlen < 128 else "")
            + " (it is decided as that IPv4 destination)"
        )
    return network


def parse_rules(text: str, *, job: bool = False) -> tuple[Rule, ...]:
    rules = []
    entries = _entries(text)
    if job and len(entries) > MAX_JOB_ENTRIES:
        raise ValueError(f"has {len(entries)} entries; a job may list at most {MAX_JOB_ENTRIES}")
    for n, entry in enumerate(entries, 1):
        try:
            rules.append(parse_rule(entry, job=job))
        except ValueError as exc:
            raise ValueError(f"entry {n} {_shown(entry)!r}: {exc}") from None
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

    def _admin(self, proto: int, dst: Address, port: int | None) -> Decision:
        for rule in self.rules:
            if rule.matches(proto, dst, port):
                return Decision(rule.allow, rule.text)
        return Decision(self.default_allow, f"default {'allow' if self.default_allow else 'deny'}")

    def _one(self, proto: int, dst: Address, port: int | None) -> Decision:
        admin = self._admin(proto, dst, port)
        if not admin.allow or self.job_rules is None:
            return admin
        for rule in self.job_rules:
            if rule.matches(proto, dst, port):
                return Decision(True, f"job: {rule.text}")
        return Decision(False, "job: not in LarkAllowedConnections")

    def decide(self, proto: int, dst: Address, port: int | None) -> Decision:
        """The verdict on a first packet (or relayed flow) to ``dst``. An IPv6 address that
        stands for an IPv4 one is decided as that one too (see the module)."""
        if isinstance(dst, ipaddress.IPv6Address):
            mapped = dst.ipv4_mapped
            if mapped is not None:
                decision = self._one(proto, mapped, port)
                return Decision(decision.allow, f"{decision.rule} (as {mapped})")
            if dst in NAT64:  # (the job's own list narrows by the address it used)
                six = self._one(proto, dst, port)
                if not six.allow:
                    return six
                embedded = ipaddress.IPv4Address(int(dst) & 0xFFFFFFFF)
                four = self._admin(proto, embedded, port)
                return Decision(four.allow, f"{six.rule}; {four.rule} (NAT64 to {embedded})")
        return self._one(proto, dst, port)

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
