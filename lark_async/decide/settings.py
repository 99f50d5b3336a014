"""Admin settings from root-owned places only: CLI flags > machine ad > HTCondor config > default.

The job ad is never a source here (DESIGN.md section 4); a machine-ad
expression may still look at the job through ``TARGET``.

``Settings`` is the one declaration of every setting: each field names its default,
parser, HTCondor config knob, machine-ad attribute, flag and text. From it come the
resolution below, the flags of ``run``/``startd-attrs``/``netns-test`` (cli.py) and
the README's configuration reference (``python -m lark_async.decide.settings --reference``).
cli.py reads the table to build those flags, so classad2 and the ad code load only when
settings are resolved.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ..errors import ConfigError
from .modes import (
    CHOSEN_NETWORK_TYPES,
    AddressType,
    Dhcp6Use,
    FirewallBackend,
    IPv6Mode,
    IPv6Use,
    NetworkType,
)

if TYPE_CHECKING:
    import classad2

    from .connpolicy import Rule
    from .reach import NodePort, Service

NETWORK_TYPES = tuple(t.value for t in CHOSEN_NETWORK_TYPES)
ADDRESS_TYPES = tuple(t.value for t in AddressType)
FIREWALL_BACKENDS = tuple(b.value for b in FirewallBackend)
IPTABLES_COMMANDS = ("iptables", "iptables-nft", "iptables-legacy")
CONNECTION_DEFAULTS = ("allow", "deny")
DEFAULT_STATE_DIR = "/run/lark/state"
DEFAULT_LOCK_DIR = "/run/lark/lock"
DEFAULT_AUDIT_DIR = "/var/log/lark/connections"
DEFAULT_AUDIT_MAX_BYTES = 16 * 1024 * 1024

T = TypeVar("T")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError("is not a boolean (true or false)")


@dataclass(frozen=True)
class _Choice:
    """One of a few words; a class, not a closure, so that the flag can list them."""

    choices: tuple[str, ...]

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in self.choices:
            raise ValueError(f"is not one of {', '.join(self.choices)}")
        return value.lower()


E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class _Mode(Generic[E]):
    """One of an enum's members, by its word (the modes: ``NetworkType`` and the like)."""

    kind: type[E]
    allowed: tuple[E, ...]

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(m.value for m in self.allowed)

    def __call__(self, value: Any) -> E:
        return self.kind(_Choice(self.choices)(value))


@dataclass(frozen=True)
class _Modes(Generic[E]):
    """A list of an enum's members, by their words (what a job may ask for)."""

    kind: type[E]
    allowed: tuple[E, ...]

    def __call__(self, value: Any) -> tuple[E, ...]:
        return tuple(map(self.kind, _Words(tuple(m.value for m in self.allowed))(value)))


def _network(value: Any) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(str(value).strip(), strict=True)
    except ValueError as exc:
        raise ValueError("is not an IPv4 network like 192.168.181.0/24") from exc
    if net.prefixlen > 29:
        raise ValueError("is too small: it needs a prefix of /29 or shorter")
    if net.prefixlen < 16:
        raise ValueError("is too large: use a prefix of /16 (32766 jobs) or longer")
    return net


ULA = ipaddress.IPv6Network("fc00::/7")
DEFAULT_LOCAL_NETWORK6 = ipaddress.IPv6Network("fd4c:6172:6b00::/64")  # "Lark" in a ULA


def _network6(value: Any) -> ipaddress.IPv6Network:
    try:
        net = ipaddress.IPv6Network(str(value).strip(), strict=True)
    except ValueError as exc:
        raise ValueError("is not an IPv6 prefix like fd4c:6172:6b00::/64") from exc
    if net.prefixlen > 64:
        raise ValueError("is too small: it needs a prefix of /64 or shorter")
    return net


def _local_network6(value: Any) -> ipaddress.IPv6Network:
    """A unique local prefix: NAT66 hides it, so no site routes it (RFC 4193)."""
    net = _network6(value)
    if not net.subnet_of(ULA):
        raise ValueError("is not a unique local prefix (fc00::/7), which NAT66 needs")
    return net


_NOT_ROUTED = ipaddress.IPv6Network("::/64")  # unspecified, loopback, IPv4-compatible


def _routed_prefix6(value: Any) -> ipaddress.IPv6Network | None:
    """The site's prefix for this node's jobs: global or ULA, never link-local or
    multicast (a job would share it with the link)."""
    if str(value).strip().lower() in ("", "none"):
        return None
    net = _network6(value)
    if net.is_link_local or net.is_multicast or net.network_address in _NOT_ROUTED:
        raise ValueError("is not a prefix a site can route (link-local, multicast, loopback)")
    return net


_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def _ifname(value: Any) -> str:
    text = str(value).strip()
    if not _IFNAME_RE.fullmatch(text):  # (so never "." or "..": they begin with a dot)
        raise ValueError("is not an interface name (1-15 letters, digits, '_', '.', '-')")
    return text


def _interface(value: Any) -> ipaddress.IPv4Interface:
    """An address, with or without /prefix."""
    try:
        iface = ipaddress.IPv4Interface(str(value).strip())
    except ValueError as exc:
        raise ValueError("is not an IPv4 address like 10.0.0.5 or 10.0.0.5/24") from exc
    ip = iface.ip
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local:
        raise ValueError("is not a usable host address")
    return iface


def _address(value: Any) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError as exc:
        raise ValueError("is not an IPv4 address") from exc


def _prefix(value: Any) -> int:
    text = str(value).strip()
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError as exc:
        raise ValueError("is not a netmask (255.255.255.0) or prefix length (24)") from exc
    if not 8 <= prefix <= 30:
        raise ValueError("is not a LAN's prefix (/8 to /30)")
    return prefix


# The parsers that take bounds or words are classes, not closures made at import, so
# that what they do is looked up when a value is parsed (and mutation testing reaches it).


@dataclass(frozen=True)
class _Seconds:
    low: float
    high: float

    def __call__(self, value: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError("is not a number of seconds") from exc
        if not self.low <= seconds <= self.high:
            raise ValueError(f"must be between {self.low:g} and {self.high:g} seconds")
        return seconds


@dataclass(frozen=True)
class _Words:
    """A list of some of a few words, separated by commas or spaces, each once."""

    choices: tuple[str, ...]

    def __call__(self, value: Any) -> tuple[str, ...]:
        words = [w.strip().lower() for w in str(value).replace(",", " ").split()]
        bad = [w for w in words if w not in self.choices]
        if bad or not words:
            raise ValueError(f"is not a list of {', '.join(self.choices)}")
        return tuple(dict.fromkeys(words))


@dataclass(frozen=True)
class _Count:
    low: int
    high: int

    def __call__(self, value: Any) -> int:
        try:
            number = int(str(value).strip())
        except ValueError as exc:
            raise ValueError("is not a whole number") from exc
        if not self.low <= number <= self.high:
            raise ValueError(f"must be between {self.low} and {self.high}")
        return number


def _program(value: Any) -> str:
    text = str(value).strip()
    if not text.startswith("/") or "\0" in text:
        raise ValueError("is not an absolute path to a program")
    return text


def _connection_rules(value: Any) -> tuple[Rule, ...]:
    if not isinstance(value, str):
        raise ValueError("is not a string of entries")
    from .connpolicy import parse_rules

    return parse_rules(value)


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


@dataclass(frozen=True)
class _Size:
    """A size in bytes, or with a binary K, M or G."""

    low: int
    high: int

    def __call__(self, value: Any) -> int:
        match = re.fullmatch(r"\s*([0-9]+)\s*([KMG]?)B?\s*", str(value), re.IGNORECASE)
        if match is None:
            raise ValueError("is not a size in bytes (e.g. 16777216 or 16M)")
        size = int(match[1]) * _UNITS[match[2].upper()]
        if not self.low <= size <= self.high:
            raise ValueError(f"must be between {self.low} and {self.high} bytes")
        return size


def _node_ports(value: Any) -> tuple[NodePort, ...]:
    from .reach import parse_node_ports

    return parse_node_ports(value)


def _services(value: Any) -> tuple[Service, ...]:
    from .reach import parse_services

    return parse_services(value)


MAX_NAMESERVERS = 3  # glibc's MAXNS: resolv.conf lines past it are ignored


def _nameservers(value: Any) -> tuple[ipaddress.IPv4Address, ...]:
    words = str(value).replace(",", " ").split()
    if not words:
        raise ValueError("is empty: name one to three DNS servers")
    if len(words) > MAX_NAMESERVERS:
        raise ValueError(f"names {len(words)} servers; a resolver uses at most {MAX_NAMESERVERS}")
    try:
        found = tuple(ipaddress.IPv4Address(w) for w in words)
    except ValueError:
        raise ValueError("is not a list of IPv4 addresses") from None
    if any(a.is_unspecified or a.is_multicast for a in found):
        raise ValueError("names an address no DNS server has")
    return tuple(dict.fromkeys(found))


def _agent_cgroup(value: Any) -> str | None:
    """``none``, or a cgroup path whose names are plain (backends/placement.py resolves it)."""
    text = str(value).strip()
    if text.lower() == "none":
        return None
    names = [n for n in text.split("/") if n not in ("", ".")]
    if not names or len(text) > 512:
        raise ValueError("is not none or a cgroup path")
    for name in names:
        if not name.isprintable() or name.startswith(("lark-", "cgroup.")):  # ".." passes
            raise ValueError(f"names {name!r}, which is not a name for the agent's own cgroup")
    return text


def _path(value: Any) -> Path:
    path = Path(str(value))
    if not path.is_absolute():
        raise ValueError("is not an absolute path")
    return path


MAX_RATE_MBIT = 1e6  # a terabit: past it a value is a typo (kbit/s, bit/s), not a link


def parse_rate_mbit(value: Any) -> float:
    """A rate in Mbit/s, above 0 and at most MAX_RATE_MBIT (shaping: decide/bandwidth.py)."""
    if isinstance(value, bool):
        raise ValueError("is not a rate in Mbit/s")
    try:
        rate = float(str(value).strip())
    except ValueError as exc:
        raise ValueError("is not a rate in Mbit/s (a number, e.g. 100)") from exc
    if not rate > 0 or rate != rate:
        raise ValueError("is not a rate above 0 Mbit/s (unset it for no shaping)")
    if rate > MAX_RATE_MBIT:
        raise ValueError(f"is more than {MAX_RATE_MBIT:g} Mbit/s: the value is in Mbit/s")
    return rate


def _attribute(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", text):
        raise ValueError("is not a ClassAd attribute name")
    return text


AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: Any) -> tuple[AnyNetwork, ...]:
    words = str(value).replace(",", " ").split()
    found: list[AnyNetwork] = []
    for word in words:
        try:
            found.append(ipaddress.ip_network(word, strict=True))
        except ValueError:
            raise ValueError(
                f"names {word[:60]!r}, which is not a network like 10.1.0.0/16 or 2001:db8::/48"
            ) from None
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Knob:
    """One admin setting as ``Settings`` declares it; ``field`` and ``default`` come from there."""

    parse: Callable[[Any], Any]  # raises ValueError with the end of a sentence
    doc: str  # the README's entry (reStructuredText)
    config: str | None  # HTCondor config knob
    machine: str | None  # machine-ad attribute (under wrap: the config macro of that name)
    flag: str | None  # the flag of run, startd-attrs and netns-test
    metavar: str | None
    help: str | None  # the flag's --help, without the knob's name and default
    shown_default: str | None  # the default in words (reST), where the value would mislead
    field: str = ""
    default: Any = None

    @property
    def name(self) -> str:
        """The name an admin knows the setting by: its config knob, else its attribute."""
        return self.config or self.machine or self.field

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.parse.choices if isinstance(self.parse, _Choice | _Mode) else None

    @property
    def switch(self) -> bool:
        """A yes/no setting: its flag comes with a ``--no-`` twin."""
        return self.parse is _bool

    def default_text(self) -> str | None:
        """The default as the reference shows it (reST), or None when there is nothing to say."""
        if self.shown_default is not None:
            return self.shown_default
        value = self.default
        if value is None:
            return None
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, float):
            value = f"{value:g}"
        elif isinstance(value, tuple):
            value = ", ".join(value)
        return f"``{value}``"

    def flag_help(self) -> str:
        """The flag's --help line: the knob, what it does, its default."""
        text = f"{self.name}: {self.help}"
        default = self.default_text()
        if default is not None:
            text += f" (default: {default.replace('``', '')})"
        return text


def _knob(
    default: T,
    parse: Callable[[Any], T],
    doc: str,
    *,
    config: str | None = None,
    machine: str | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    help: str | None = None,
    shown_default: str | None = None,
) -> T:
    """A ``Settings`` field that is an admin setting (mypy checks ``parse`` against the type)."""
    knob = Knob(parse, doc, config, machine, flag, metavar, help, shown_default)
    return field(default=default, metadata={"knob": knob})


@dataclass(frozen=True)
class Settings:
    """Every admin setting, with where it comes from and how it is explained (the one table)."""

    use_network_namespaces: bool = _knob(
        True,
        _bool,
        "``false`` runs the job with no namespace at all.",
        config="USE_NETWORK_NAMESPACES",
    )
    network_type: NetworkType = _knob(
        NetworkType.NAT,
        _Mode(NetworkType, CHOSEN_NETWORK_TYPES),
        "``nat``; ``bridge`` puts the job on the site LAN (see `Bridge mode`_); ``none`` gives "
        "the job loopback only.",
        machine="LarkNetworkType",
        flag="--network-type",
        help="nat, bridge or none (loopback only)",
    )
    address_type: AddressType | None = _knob(  # None: the mode's default
        None,
        _Mode(AddressType, tuple(AddressType)),
        "``local`` (NAT's only type and its default), ``dhcp`` (bridge's default) or "
        "``static`` (bridge).",
        machine="LarkAddressType",
        flag="--address-type",
        help="local (NAT's only and default), dhcp (bridge's default) or static (bridge mode; "
        "the address comes from LarkInnerAddressIPv4)",
    )
    accounting: bool = _knob(
        True,
        _bool,
        "Count the job's bytes and publish them.",
        config="LARK_NETWORK_ACCOUNTING",
        machine="LarkNetworkAccounting",
        flag="--accounting",
        help="count the job's bytes and publish them in the update ad",
    )
    local_network: ipaddress.IPv4Network = _knob(
        ipaddress.IPv4Network("192.168.181.0/24"),
        _network,
        "The NAT address pool, between /16 and /29.",
        config="LARK_LOCAL_NETWORK",
        flag="--local-network",
        metavar="NET/PREFIX",
        help="pool for NAT addresses",
    )
    ipv6: IPv6Use = _knob(
        IPv6Use.AUTO,
        _Mode(IPv6Use, tuple(IPv6Use)),
        "``auto`` gives NAT jobs IPv6 when the node has it (a global IPv6 address and an IPv6 "
        "default route where the agent runs); ``on`` refuses a job on a node without it; "
        "``off`` gives jobs IPv4 only. An IPv6-only node gives its jobs IPv6 only.",
        config="LARK_IPV6",
        flag="--ipv6",
        help="auto (IPv6 when the node has it), on (refuse the job without it) or off",
    )
    ipv6_mode: IPv6Mode = _knob(
        IPv6Mode.NAT66,
        _Mode(IPv6Mode, tuple(IPv6Mode)),
        "``nat66``: a NAT job's IPv6 pair comes from ``LARK_LOCAL_NETWORK6`` and leaves "
        "masqueraded; ``routed``: from ``LARK_ROUTED_PREFIX6``, reachable from the site.",
        config="LARK_IPV6_MODE",
        flag="--ipv6-mode",
        help="nat66 (masqueraded ULA pair) or routed (a pair of LARK_ROUTED_PREFIX6)",
    )
    local_network6: ipaddress.IPv6Network = _knob(
        DEFAULT_LOCAL_NETWORK6,
        _local_network6,
        "The NAT66 address pool: a unique local prefix (fc00::/7) of /64 or shorter.",
        config="LARK_LOCAL_NETWORK6",
        flag="--local-network6",
        metavar="NET/PREFIX",
        help="pool for NAT66 addresses (a ULA prefix, /64 or shorter)",
    )
    routed_prefix6: ipaddress.IPv6Network | None = _knob(
        None,
        _routed_prefix6,
        "``LARK_IPV6_MODE = routed``: the prefix the site routes to this node (or has on-link "
        "on its uplink: the node then answers neighbour discovery for its jobs), /64 or "
        "shorter.",
        config="LARK_ROUTED_PREFIX6",
        flag="--routed-prefix6",
        metavar="NET/PREFIX",
        help="prefix the site routes to this node, for LARK_IPV6_MODE routed",
        shown_default="none",
    )
    accounting_interval_s: float = _knob(
        5.0,
        _Seconds(0.05, 86400),
        "Seconds between update-ad writes while the job runs.",
        config="LARK_ACCOUNTING_INTERVAL",
        flag="--accounting-interval",
        metavar="S",
        help="seconds between update-ad writes",
    )
    state_dir: Path = _knob(
        Path(DEFAULT_STATE_DIR),
        _path,
        "Per-job state records, what ``lark-agent cleanup`` reads.",
        config="LARK_STATE_DIR",
        flag="--state-dir",
        metavar="DIR",
        help="per-job state records",
    )
    lock_dir: Path = _knob(
        Path(DEFAULT_LOCK_DIR),
        _path,
        "Address lock files, and each running job's name lock.",
        config="LARK_LOCK_DIR",
        flag="--lock-dir",
        metavar="DIR",
        help="address lock files",
    )
    bridge_name: str = _knob(
        "lark",
        _ifname,
        "The bridge of bridge mode; it stays after jobs.",
        config="LARK_BRIDGE_NAME",
        machine="LarkBridgeName",
        flag="--bridge-name",
        metavar="BR",
        help="the bridge of bridge mode; it stays after jobs",
    )
    bridge_device: str | None = _knob(  # enslaved when Lark creates the bridge
        None,
        _ifname,
        "The LAN device to make that bridge from when it does not exist yet (its addresses "
        "and routes move to the bridge).",
        config="LARK_BRIDGE_DEVICE",
        machine="LarkBridgeDevice",
        flag="--bridge-device",
        metavar="DEV",
        help="the LAN device to make the bridge from when it does not exist (its addresses "
        "and routes move to the bridge)",
    )
    static_address: ipaddress.IPv4Interface | None = _knob(  # address with its prefix
        None,
        _interface,
        "A static job address, ``10.0.0.5/24`` (or without the prefix, which then comes from "
        "``LARK_SUBNET_MASK``), for address type ``static``.",
        machine="LarkInnerAddressIPv4",
        flag="--static-address",
        metavar="ADDR/PREFIX",
        help="the job's address for --address-type static",
    )
    static_prefix: int | None = _knob(  # when the address came without one
        None,
        _prefix,
        "The prefix of a static address given without one: a netmask (``255.255.255.0``) or "
        "a length (``24``).",
        config="LARK_SUBNET_MASK",
        machine="LarkSubnetMask",
    )
    gateway: ipaddress.IPv4Address | None = _knob(
        None,
        _address,
        "The default route of a static address.",
        config="LARK_GATEWAY",
        machine="LarkGateway",
        flag="--gateway",
        metavar="ADDR",
        help="default route for a static address",
    )
    dhcp6: Dhcp6Use = _knob(
        Dhcp6Use.AUTO,
        _Mode(Dhcp6Use, tuple(Dhcp6Use)),
        "A bridged job with IPv6: ``auto`` runs Lark's DHCPv6 client for it once the LAN's "
        "router advertisement sets the managed flag (RFC 4861's M), beside SLAAC; ``on`` from "
        "the start, and no lease within ``LARK_DHCP_TIMEOUT`` refuses the job; ``off`` never.",
        config="LARK_DHCP6",
        flag="--dhcp6",
        help="auto (when the LAN's router says managed), on (a lease or no job) or off",
    )
    dhcp_timeout_s: float = _knob(
        30.0,
        _Seconds(1, 600),
        "Seconds to wait for a job's first lease before giving up (exit 125).",
        config="LARK_DHCP_TIMEOUT",
        flag="--dhcp-timeout",
        metavar="S",
        help="give up on the first lease after S seconds",
    )
    create_script: str | None = _knob(
        None,
        _program,
        "Run once the job's network is up; its failure stops the job. See `Callout scripts`_.",
        config="NETWORK_NAMESPACE_CREATE_SCRIPT",
        machine="LarkStartupScript",
        flag="--create-script",
        metavar="PATH",
        help="run as PATH EXTERNAL_IP INTERNAL_IP CHAIN VETH (stdin: job ad, ------, machine "
        "ad) once the job's network is up; failure stops the job",
    )
    delete_script: str | None = _knob(
        None,
        _program,
        "Run at cleanup. See `Callout scripts`_.",
        config="NETWORK_NAMESPACE_DELETE_SCRIPT",
        machine="LarkCleanupScript",
        flag="--delete-script",
        metavar="PATH",
        help="run as PATH CHAIN VETH INTERNAL_IP at cleanup",
    )
    script_timeout_s: float = _knob(
        30.0,
        _Seconds(1, 3600),
        "Seconds a callout script may run before it is killed (with everything it started) "
        "and counts as failed.",
        config="LARK_SCRIPT_TIMEOUT",
        flag="--script-timeout",
        metavar="S",
        help="a script still running after S seconds is killed and counts as failed",
    )
    allowed_network_types: tuple[NetworkType, ...] = _knob(  # what a job may ask for
        (NetworkType.NAT, NetworkType.NONE),
        _Modes(NetworkType, CHOSEN_NETWORK_TYPES),
        "The network types a job may ask for; add ``bridge`` to let jobs ask for bridging. "
        "See `Policy`_.",
        config="LARK_ALLOWED_NETWORK_TYPES",
        machine="LarkAllowedNetworkTypes",
        flag="--allowed-network-types",
        metavar="LIST",
        help="the types a job may ask for",
    )
    allowed_address_types: tuple[AddressType, ...] = _knob(
        tuple(AddressType),
        _Modes(AddressType, tuple(AddressType)),
        "The address types a job may ask for.",
        config="LARK_ALLOWED_ADDRESS_TYPES",
        machine="LarkAllowedAddressTypes",
    )
    force_accounting: bool = _knob(  # a job may not turn accounting off
        False,
        _bool,
        "Count every job, even one that asks ``NetworkAccounting = false``.",
        config="LARK_FORCE_ACCOUNTING",
    )
    firewall_backend: FirewallBackend = _knob(
        FirewallBackend.NFTABLES,
        _Mode(FirewallBackend, tuple(FirewallBackend)),
        "``iptables`` for sites whose scripts use iptables (NAT mode only). See `Firewall`_.",
        config="LARK_FIREWALL_BACKEND",
        flag="--firewall-backend",
        help="nftables or iptables (NAT mode; a chain named LarkIptableName in the filter "
        "table, for admin scripts that use iptables)",
    )
    iptables_command: str = _knob(
        "iptables",
        _Choice(IPTABLES_COMMANDS),
        "The iptables build the iptables backend runs: ``iptables`` (whatever the system's "
        "alternative is), ``iptables-nft`` or ``iptables-legacy``. A job with IPv6 also uses "
        "the matching ip6tables build (``ip6tables``, ``ip6tables-nft``, ``ip6tables-legacy``).",
        config="LARK_IPTABLES",
        flag="--iptables",
        help="which iptables build the iptables backend uses",
    )
    policy_script: str | None = _knob(
        None,
        _program,
        "The admin's policy callout. See `Policy`_.",
        config="STARTER_NETWORK_POLICY_SCRIPT_PATH",
        flag="--policy-script",
        metavar="PATH",
        help="gets the job ad, ------ and the machine ad on stdin and may print "
        "LarkNetworkType, LarkAddressType, LarkNetworkAccounting to override the decision; "
        "failure or other output refuses the job",
    )
    bridge_wait_s: float = _knob(  # a port of an STP bridge needs 2 x 15 s to forward
        35.0,
        _Seconds(0, 120),
        "Seconds to wait for the bridge to forward on a job's port (an STP bridge's port "
        "listens and learns for twice its forward delay first).",
        config="LARK_BRIDGE_WAIT",
        flag="--bridge-wait",
        metavar="S",
        help="how long to wait for the bridge to forward on the job's port (35 s is enough "
        "for STP's 2 x 15 s)",
    )
    connection_rules: tuple[Rule, ...] | None = _knob(  # None: no policy, no queue
        None,
        _connection_rules,
        "Where jobs may connect, decided connection by connection. See `Connection policy`_. "
        "Unset: no policy, no queue, no cost.",
        config="LARK_CONNECTION_POLICY",
        machine="LarkConnectionPolicy",
        flag="--connection-policy",
        metavar="ENTRIES",
        help="where jobs may connect, first match wins: entries 'allow|deny [tcp|udp|icmp|any] "
        "ADDRESS[/PREFIX][:PORT[-PORT]]' separated by commas, an IPv6 address in brackets "
        "([2001:db8::/32]:443; an entry matches its own family only); each new connection is "
        "decided by the agent through NFQUEUE and written to the audit log (unset: no "
        "policy, no queue)",
    )
    connection_default: str = _knob(  # for connections no rule matches
        "deny",
        _Choice(CONNECTION_DEFAULTS),
        "The verdict for a connection that no entry of the policy matches.",
        config="LARK_CONNECTION_DEFAULT",
        machine="LarkConnectionDefault",
        flag="--connection-default",
        help="the verdict when no entry matches",
    )
    max_jobs_per_user: int | None = _knob(  # under wrap
        None,
        _Count(1, 65536),
        "How many jobs one user may run through ``wrap`` (the sudo rule) at once; one more is "
        "refused with exit 125. Raise it where slots oversubscribe CPUs.",
        config="LARK_MAX_JOBS_PER_USER",
        shown_default="the node's CPU count",
    )
    audit_dir: Path = _knob(
        Path(DEFAULT_AUDIT_DIR),
        _path,
        "Where each job's connection audit log, ``<name>.jsonl``, is appended to.",
        config="LARK_AUDIT_DIR",
        flag="--audit-dir",
        metavar="DIR",
        help="per-job connection audit logs, JOB.jsonl",
    )
    job_mtu: int | None = _knob(  # NAT mode: the most a job's veth takes of the uplink's MTU
        None,
        _Count(1280, 65535),  # (IPv6's minimum)
        "The largest MTU a NAT job's veth may have, 1280 to 65535. A NAT job's veth takes the "
        "MTU of the node's uplink: the device of the IPv4 default route (main table, lowest "
        "metric), or that route's ``mtu`` when smaller; this caps it, e.g. for a node whose "
        "LAN has jumbo frames but whose jobs mostly reach the Internet (the job then sends "
        "smaller packets instead of relying on path MTU discovery). A bridged job's veth "
        "always has the bridge's MTU: the job is on that LAN, whose hosts send it frames of "
        "the LAN's size, which a smaller port would drop without telling anyone; set the "
        "bridge's own MTU instead.",
        config="LARK_JOB_MTU",
        flag="--job-mtu",
        metavar="BYTES",
        help="in NAT mode the most a job's MTU may be (1280-65535); it is otherwise the "
        "node's uplink's (the default route's device, or the route's mtu). A bridged job "
        "always has the bridge's MTU",
        shown_default="no cap",
    )
    audit_max_bytes: int = _knob(  # per job's audit log
        DEFAULT_AUDIT_MAX_BYTES,
        _Size(4096, 1024**4),
        "The most one job writes to its audit log (bytes, or with ``K``/``M``/``G``); past it "
        "decisions are only counted (``NetworkAuditRecordsDropped``).",
        config="LARK_AUDIT_MAX_BYTES",
        flag="--audit-max-bytes",
        metavar="SIZE",
        help="the cap of each job's audit log; past it decisions are only counted",
        shown_default="``16M``",
    )
    job_dns: tuple[ipaddress.IPv4Address, ...] | None = _knob(  # static addresses only
        None,
        _nameservers,
        "The DNS servers of a bridged job with a static address (one to three); unset, it "
        "gets the node's. See `What a job sees and reaches`_.",
        config="LARK_JOB_DNS",
        flag="--job-dns",
        metavar="ADDRS",
        help="DNS servers for a bridged job with a static address (unset: the node's)",
        shown_default="the node's",
    )
    job_resolv_conf: Path | None = _knob(
        None,
        _path,
        "A file every job gets as its ``/etc/resolv.conf``, as it is (a root-owned file).",
        config="LARK_JOB_RESOLV_CONF",
        flag="--job-resolv-conf",
        metavar="FILE",
        help="a root-owned file every job gets as its /etc/resolv.conf, as it is",
    )
    loopback_services: tuple[Service, ...] = _knob(
        (),
        _services,
        "Node loopback services a job may use, on the same address and port inside its "
        "namespace: ``tcp 127.0.0.1:3128, udp 127.0.0.1:53``. The starter's chirp server and "
        "the node's loopback resolver need no entry.",
        config="LARK_JOB_LOOPBACK_SERVICES",
        flag="--job-loopback-services",
        metavar="LIST",
        help="node loopback services relayed into each job's namespace on the same address "
        "and port, 'tcp|udp ADDRESS:PORT' separated by commas",
        shown_default="none",
    )
    node_ports: tuple[NodePort, ...] = _knob(
        (),
        _node_ports,
        "Ports of the node's own addresses that NAT jobs may reach, e.g. a squid: "
        "``tcp 3128``; every other node port is closed to them.",
        config="LARK_NODE_PORTS",
        flag="--node-ports",
        metavar="LIST",
        help="ports on the node's own addresses open to NAT jobs, 'tcp|udp PORT[-PORT]' "
        "separated by commas (all others are closed)",
        shown_default="none",
    )
    job_to_job: bool = _knob(
        False,
        _bool,
        "Let NAT jobs on this node reach each other by their inner addresses.",
        config="LARK_JOB_TO_JOB",
        flag="--job-to-job",
        help="let NAT jobs on this node reach each other",
    )

    bandwidth_resource: str = _knob(
        "NetworkBandwidth",
        _attribute,
        "The HTCondor machine resource whose share of the slot is the job's bandwidth, in "
        "Mbit/s both ways: the node declares ``MACHINE_RESOURCE_NetworkBandwidth``, a job's "
        "``request_NetworkBandwidth`` gives its slot that share as ``NetworkBandwidth``, and "
        "its veth is shaped to it. A share of 0 (the job asked for none) or no such "
        "attribute falls back to ``LARK_BANDWIDTH_LIMIT``. Under ``wrap`` the machine ad is "
        "the caller's, so the slot's share is not read (the log says so): the job's request "
        "within ``LARK_BANDWIDTH_SLOT_CAP`` takes its place. See `Bandwidth`_.",
        config="LARK_BANDWIDTH_RESOURCE",
        flag="--bandwidth-resource",
        metavar="ATTR",
        help="the machine resource whose slot share is the job's limit in Mbit/s",
    )
    bandwidth_slot_cap: float | None = _knob(  # HTCondor config only: wrap has no flags
        None,
        parse_rate_mbit,
        "Under ``wrap``, the most one slot may hold of ``LARK_BANDWIDTH_RESOURCE``, in "
        "Mbit/s: the job's share is its request (``request_NetworkBandwidth`` in the submit "
        "file, ``RequestNetworkBandwidth`` in the job ad) up to this cap, since the job ad "
        "is the caller's too. Unset: the node's ``MACHINE_RESOURCE_NetworkBandwidth`` when "
        "that is a number; with neither the request is not used and ``LARK_BANDWIDTH_LIMIT`` "
        "decides. ``run`` reads the slot's share instead. See `Bandwidth`_.",
        config="LARK_BANDWIDTH_SLOT_CAP",
        shown_default="the node's ``MACHINE_RESOURCE_<resource>``",
    )
    bandwidth_limit: float | None = _knob(
        None,
        parse_rate_mbit,
        "The job's bandwidth in Mbit/s, both ways, when the slot has no share of "
        "``LARK_BANDWIDTH_RESOURCE``; unset: no shaping.",
        config="LARK_BANDWIDTH_LIMIT",
        machine="LarkBandwidthLimit",
        flag="--bandwidth-limit",
        metavar="MBIT",
        help="the job's bandwidth in Mbit/s both ways, without a slot share",
        shown_default="no limit",
    )
    bandwidth_limit_ingress: float | None = _knob(
        None,
        parse_rate_mbit,
        "The job's bandwidth towards it (what it downloads) in Mbit/s, over the slot's share "
        "and ``LARK_BANDWIDTH_LIMIT``.",
        config="LARK_BANDWIDTH_LIMIT_INGRESS",
        machine="LarkBandwidthLimitIngress",
        flag="--bandwidth-limit-ingress",
        metavar="MBIT",
        help="the job's bandwidth towards it in Mbit/s, over the slot share and the limit",
        shown_default="the limit",
    )
    bandwidth_limit_egress: float | None = _knob(
        None,
        parse_rate_mbit,
        "The job's bandwidth from it (what it uploads) in Mbit/s, over the slot's share and "
        "``LARK_BANDWIDTH_LIMIT``.",
        config="LARK_BANDWIDTH_LIMIT_EGRESS",
        machine="LarkBandwidthLimitEgress",
        flag="--bandwidth-limit-egress",
        metavar="MBIT",
        help="the job's bandwidth from it in Mbit/s, over the slot share and the limit",
        shown_default="the limit",
    )
    bandwidth_exempt: tuple[AnyNetwork, ...] = _knob(
        (),
        _networks,
        "Networks a shaped job reaches at full speed (storage, the CE): "
        "``10.1.0.0/16, 2001:db8:5::/48``.",
        config="LARK_BANDWIDTH_EXEMPT",
        flag="--bandwidth-exempt",
        metavar="NETS",
        help="networks not shaped, IPv4 or IPv6, separated by commas",
        shown_default="none",
    )

    agent_cgroup: str | None = _knob(  # None: the agent stays where it was started
        cast(str | None, "../lark.agents"),
        _agent_cgroup,
        "Where the agent lives while its job runs under ``wrap``, out of the job's cgroup, "
        "so that the starter's freeze, kill and memory limit reach the job and never the "
        "agent: a cgroup path from each hierarchy's root (``/lark.slice/agents``) or from "
        "the job's cgroup (the default: ``lark.agents`` beside it), made when missing, in "
        "cgroup v2 and the v1 memory, cpu, cpuacct and freezer hierarchies; ``none`` keeps "
        "the agent in the job's cgroup. ``run`` moves only when given ``--agent-cgroup``.",
        config="LARK_AGENT_CGROUP",
        flag="--agent-cgroup",
        metavar="PATH",
        help="move the agent to this cgroup, absolute or relative to the one it was started "
        "in, and start the job back there (without it, run stays where it was started)",
    )
    kill_grace_s: float = _knob(
        5.0,
        _Seconds(0, 3600),
        "Under ``run``, seconds a job has to exit after a forwarded TERM or INT before "
        "the agent KILLs it. Under ``wrap`` the starter gives the hard kill, after the "
        "job's ``JobMaxVacateTime``; the agent forwards the soft one and waits.",
        config="LARK_KILL_GRACE",
        flag="--kill-grace",
        metavar="S",
        help="seconds between a forwarded TERM/INT and the agent's KILL (run only)",
    )

    def __post_init__(self) -> None:
        """The modes as enum members, whoever built this (tests and callers pass words)."""
        coerce = object.__setattr__  # (frozen)
        coerce(self, "network_type", NetworkType(self.network_type))
        if self.address_type is not None:
            coerce(self, "address_type", AddressType(self.address_type))
        coerce(self, "firewall_backend", FirewallBackend(self.firewall_backend))
        coerce(self, "ipv6", IPv6Use(self.ipv6))
        coerce(self, "ipv6_mode", IPv6Mode(self.ipv6_mode))
        coerce(self, "dhcp6", Dhcp6Use(self.dhcp6))
        coerce(self, "allowed_network_types", tuple(map(NetworkType, self.allowed_network_types)))
        coerce(self, "allowed_address_types", tuple(map(AddressType, self.allowed_address_types)))

    @property
    def jobs_per_user(self) -> int:
        """One job per CPU is the most one user's slots can hold unless the admin
        oversubscribes (then raise LARK_MAX_JOBS_PER_USER)."""
        return self.max_jobs_per_user or max(1, os.cpu_count() or 1)


KNOBS: tuple[Knob, ...] = tuple(
    replace(f.metadata["knob"], field=f.name, default=f.default)
    for f in fields(Settings)
    if "knob" in f.metadata
)
MACHINE_ATTRIBUTES = tuple(k.machine for k in KNOBS if k.machine)


def flag_values(args: object) -> dict[str, Any]:
    """The settings given as flags (None: not given); ``wrap`` has none."""
    return {k.field: getattr(args, k.field, None) for k in KNOBS if k.flag}


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def resolve_settings(
    cli: Mapping[str, Any],
    machine_ad: classad2.ClassAd,
    job_ad: classad2.ClassAd,
    config: Mapping[str, str],
    machine_source: str = "machine ad",
) -> Settings:
    """Pure: pick each setting from the first source that has it, and validate it there.

    ``machine_ad`` holds the admin's machine attributes (``MACHINE_ATTRIBUTES``), named
    ``machine_source`` in messages; under ``wrap`` they come from the HTCondor config
    (``config_machine_ad``), never from the caller's machine-ad file.
    """
    import classad2

    from . import ads

    values: dict[str, Any] = {}
    for knob in KNOBS:
        flag = f"command line {knob.flag}" if knob.flag else "command line"
        candidates = [(cli.get(knob.field), flag)]
        if knob.machine:
            candidates.append((ads.evaluate(machine_ad, knob.machine, job_ad), machine_source))
        if knob.config:
            candidates.append((config.get(knob.config), "HTCondor config"))
        for i, (raw, source) in enumerate(candidates):
            if raw is None:
                continue
            name = knob.machine if knob.machine and i == 1 else (knob.config or knob.field)
            if raw is classad2.Value.Error:
                raise ConfigError(f"{name} ({source}) evaluates to an error")
            try:
                values[knob.field] = knob.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{name} {_shown(raw)} ({source}) {exc}") from exc
            break
    return Settings(**values)


def machine_resource_knob(resource: str) -> str:
    """HTCondor's knob declaring the node's total of a machine resource."""
    return f"MACHINE_RESOURCE_{resource}"


def config_snapshot(config: Mapping[str, str]) -> dict[str, str]:
    """What Lark reads of the HTCondor config (its knobs, its machine attributes, the log
    file, the node's total of LARK_BANDWIDTH_RESOURCE), as plain strings: all ``wrap``
    needs, handed to its second image."""
    keys = [k.config for k in KNOBS if k.config] + list(MACHINE_ATTRIBUTES) + ["LARK_LOG_FILE"]
    with contextlib.suppress(ConfigError):  # resolving the settings says so, logged
        keys.append(machine_resource_knob(config_setting(config, "bandwidth_resource")))
    return {key: str(config[key]) for key in keys if config.get(key) is not None}


def config_setting(config: Mapping[str, str], field_name: str) -> Any:
    """One setting from the HTCondor config alone, validated (ConfigError), else its
    default: for what ``wrap`` must know before the ads are read."""
    knob = next(k for k in KNOBS if k.field == field_name)
    raw = config.get(knob.config) if knob.config else None
    if raw is None:
        return knob.default
    try:
        return knob.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{knob.name} {_shown(raw)} (HTCondor config) {exc}") from exc


def config_machine_ad(config: Mapping[str, str]) -> classad2.ClassAd:
    """The admin's machine attributes as the HTCondor config defines them.

    Under ``wrap`` the machine-ad file is the caller's to write, so Lark's machine-ad
    settings come from where the startd itself takes them: the config macros an admin
    publishes through STARTD_ATTRS (``LarkNetworkType = ifThenElse(TARGET.X, ...)``), which
    Lark evaluates against the job ad as the startd would.
    """
    import classad2

    from . import ads

    ad = classad2.ClassAd()
    for attr in MACHINE_ATTRIBUTES:
        text = config.get(attr)
        if text is None:
            continue
        try:  # one nested too deeply is refused unparsed: it could exhaust the parser's stack
            deep = ads.expression_depth(text) > ads.MAX_EXPR_DEPTH
            expr = None if deep else classad2.ExprTree(text)
        except (ValueError, classad2.ClassAdException):
            expr = None
        if expr is None:
            raise ConfigError(
                f"{attr} {_shown(text)} (HTCondor config) is not a ClassAd expression"
            )
        ad[attr] = expr
    return ad


CONDOR_CONFIG = "/etc/condor/condor_config"  # HTCondor's file when CONDOR_CONFIG is unset


def root_htcondor_config() -> Mapping[str, str]:
    """The HTCondor config, from root's files only (for ``wrap``, whose caller is anyone).

    sudo resets the environment, but a site's sudoers may keep some of it. HTCondor takes
    ``_CONDOR_<KNOB>`` variables as settings and ``CONDOR_CONFIG`` as its file: the former
    are dropped, the latter must be a root-owned file reached through root's directories.
    """
    for key in [k for k in os.environ if k.upper().startswith("_CONDOR_")]:
        del os.environ[key]
    path = os.environ.get("CONDOR_CONFIG") or CONDOR_CONFIG
    if path == "ONLY_ENV" or not os.path.lexists(path) or path == os.devnull:
        return {}
    from ..trust import check_root_file

    check_root_file(path, "HTCondor config")
    return htcondor_config()


def htcondor_config() -> Mapping[str, str]:
    """HTCondor's config when this node has one; imported lazily since htcondor2 is slow to load."""
    path = os.environ.get("CONDOR_CONFIG") or CONDOR_CONFIG
    if not os.path.isfile(path):  # includes htcondor2's own "no config" marker, /dev/null
        return {}
    import htcondor2

    class _Param(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            value = htcondor2.param.get(key)
            if value is None:
                raise KeyError(key)
            return value

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(())

        def __len__(self) -> int:
            return 0

    return _Param()


REFERENCE_WIDTH = 78


def reference() -> str:
    """The README's configuration reference: one entry per setting, in ``Settings`` order.

    A unit test compares it with README.rst, so a setting added here without being
    documented there fails the tests.
    """
    entries = []
    for knob in KNOBS:
        sources = []
        if knob.config:
            sources.append(f"``{knob.config}`` (config)")
        if knob.machine:
            sources.append(f"``{knob.machine}`` (machine ad)")
        if knob.flag:
            flag = f"--[no-]{knob.flag[2:]}" if knob.switch else knob.flag
            sources.append(f"``{flag}``")
        term = ", ".join(sources)
        default = knob.default_text()
        if default is not None:
            term += f"; default: {default}"
        # a line break inside ``literal`` or `reference`_ would change what it says
        doc = re.sub(r"`[^`]*`", lambda m: m[0].replace(" ", "\0"), knob.doc)
        body = textwrap.fill(
            doc,
            REFERENCE_WIDTH,
            initial_indent="    ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
        entries.append(f"{term}\n{body.replace(chr(0), ' ')}\n")
    return "".join(entries)


def main(argv: list[str]) -> int:
    """``python -m lark_async.decide.settings --reference``: print the README's reference."""
    if argv != ["--reference"]:
        print("usage: python -m lark_async.decide.settings --reference", file=sys.stderr)
        return 2
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
