"""Admin settings from root-owned places only: CLI flags > machine ad > HTCondor config > default.

The job ad is never a source here (DESIGN.md section 4); a machine-ad
expression may still look at the job through ``TARGET``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2

from . import ads
from .connpolicy import Rule, parse_rules
from .errors import ConfigError
from .modes import CHOSEN_NETWORK_TYPES, AddressType, FirewallBackend, NetworkType
from .trust import check_root_file

NETWORK_TYPES = tuple(t.value for t in CHOSEN_NETWORK_TYPES)
ADDRESS_TYPES = tuple(t.value for t in AddressType)
FIREWALL_BACKENDS = tuple(b.value for b in FirewallBackend)
IPTABLES_COMMANDS = ("iptables", "iptables-nft", "iptables-legacy")
DEFAULT_STATE_DIR = "/run/lark/state"
DEFAULT_LOCK_DIR = "/run/lark/lock"
DEFAULT_AUDIT_DIR = "/var/log/lark/connections"
DEFAULT_AUDIT_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    use_network_namespaces: bool = True
    network_type: NetworkType = NetworkType.NAT
    address_type: AddressType | None = None  # None: the mode's default
    accounting: bool = True
    local_network: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.181.0/24")
    accounting_interval_s: float = 5.0
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    lock_dir: Path = Path(DEFAULT_LOCK_DIR)
    bridge_name: str = "lark"
    bridge_device: str | None = None  # enslaved when Lark creates the bridge
    static_address: ipaddress.IPv4Interface | None = None  # address with its prefix
    static_prefix: int | None = None  # when the address came without one
    gateway: ipaddress.IPv4Address | None = None
    dhcp_timeout_s: float = 30.0
    bridge_wait_s: float = 35.0  # a port of an STP bridge needs 2 x 15 s to forward
    create_script: str | None = None
    delete_script: str | None = None
    script_timeout_s: float = 30.0
    policy_script: str | None = None
    allowed_network_types: tuple[NetworkType, ...] = (NetworkType.NAT, NetworkType.NONE)
    allowed_address_types: tuple[AddressType, ...] = tuple(AddressType)  # what a job may ask for
    force_accounting: bool = False  # a job may not turn accounting off
    firewall_backend: FirewallBackend = FirewallBackend.NFTABLES
    iptables_command: str = "iptables"  # or iptables-nft / iptables-legacy: pick a build
    connection_rules: tuple[Rule, ...] | None = None  # None: no policy, no queue
    connection_default: str = "deny"  # for connections no rule matches
    audit_dir: Path = Path(DEFAULT_AUDIT_DIR)
    max_jobs_per_user: int | None = None  # under wrap; None: the node's CPU count
    audit_max_bytes: int = DEFAULT_AUDIT_MAX_BYTES  # per job's audit log
    job_mtu: int | None = None  # NAT mode: the most a job's veth takes of the uplink's MTU

    def __post_init__(self) -> None:
        """The modes as enum members, whoever built this (the parsers give their words)."""
        coerce = object.__setattr__  # (frozen)
        coerce(self, "network_type", NetworkType(self.network_type))
        if self.address_type is not None:
            coerce(self, "address_type", AddressType(self.address_type))
        coerce(self, "firewall_backend", FirewallBackend(self.firewall_backend))
        coerce(self, "allowed_network_types", tuple(map(NetworkType, self.allowed_network_types)))
        coerce(self, "allowed_address_types", tuple(map(AddressType, self.allowed_address_types)))

    @property
    def jobs_per_user(self) -> int:
        """One job per CPU is the most one user's slots can hold unless the admin
        oversubscribes (then raise LARK_MAX_JOBS_PER_USER)."""
        return self.max_jobs_per_user or max(1, os.cpu_count() or 1)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError("is not a boolean (true or false)")


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"is not one of {', '.join(choices)}")
        return value.lower()

    return parse


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


_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def _ifname(value: Any) -> str:
    text = str(value).strip()
    if not _IFNAME_RE.fullmatch(text) or text in (".", ".."):
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


def _seconds(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError("is not a number of seconds") from exc
        if not low <= seconds <= high:
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return seconds

    return parse


def _choices(choices: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        words = [w.strip().lower() for w in str(value).replace(",", " ").split()]
        bad = [w for w in words if w not in choices]
        if bad or not words:
            raise ValueError(f"is not a list of {', '.join(choices)}")
        return tuple(dict.fromkeys(words))

    return parse


def _count(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        try:
            number = int(str(value).strip())
        except ValueError as exc:
            raise ValueError("is not a whole number") from exc
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse


def _program(value: Any) -> str:
    text = str(value).strip()
    if not text.startswith("/") or "\0" in text:
        raise ValueError("is not an absolute path to a program")
    return text


def _connection_rules(value: Any) -> tuple[Rule, ...]:
    if not isinstance(value, str):
        raise ValueError("is not a string of entries")
    return parse_rules(value)


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _bytes(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        match = re.fullmatch(r"\s*([0-9]+)\s*([KMG]?)B?\s*", str(value), re.IGNORECASE)
        if match is None:
            raise ValueError("is not a size in bytes (e.g. 16777216 or 16M)")
        size = int(match[1]) * _UNITS[match[2].upper()]
        if not low <= size <= high:
            raise ValueError(f"must be between {low} and {high} bytes")
        return size

    return parse


def _path(value: Any) -> Path:
    path = Path(str(value))
    if not path.is_absolute():
        raise ValueError("is not an absolute path")
    return path


@dataclass(frozen=True)
class _Knob:
    field: str
    config: str | None  # HTCondor config knob
    machine: str | None  # machine-ad attribute
    parse: Callable[[Any], Any]


KNOBS = (
    _Knob("use_network_namespaces", "USE_NETWORK_NAMESPACES", None, _bool),
    _Knob("network_type", None, "LarkNetworkType", _choice(NETWORK_TYPES)),
    _Knob("address_type", None, "LarkAddressType", _choice(ADDRESS_TYPES)),
    _Knob("accounting", "LARK_NETWORK_ACCOUNTING", "LarkNetworkAccounting", _bool),
    _Knob("local_network", "LARK_LOCAL_NETWORK", None, _network),
    _Knob("accounting_interval_s", "LARK_ACCOUNTING_INTERVAL", None, _seconds(0.05, 86400)),
    _Knob("state_dir", "LARK_STATE_DIR", None, _path),
    _Knob("lock_dir", "LARK_LOCK_DIR", None, _path),
    _Knob("bridge_name", "LARK_BRIDGE_NAME", "LarkBridgeName", _ifname),
    _Knob("bridge_device", "LARK_BRIDGE_DEVICE", "LarkBridgeDevice", _ifname),
    _Knob("static_address", None, "LarkInnerAddressIPv4", _interface),
    _Knob("static_prefix", "LARK_SUBNET_MASK", "LarkSubnetMask", _prefix),
    _Knob("gateway", "LARK_GATEWAY", "LarkGateway", _address),
    _Knob("dhcp_timeout_s", "LARK_DHCP_TIMEOUT", None, _seconds(1, 600)),
    _Knob("bridge_wait_s", "LARK_BRIDGE_WAIT", None, _seconds(0, 120)),
    _Knob("create_script", "NETWORK_NAMESPACE_CREATE_SCRIPT", "LarkStartupScript", _program),
    _Knob("delete_script", "NETWORK_NAMESPACE_DELETE_SCRIPT", "LarkCleanupScript", _program),
    _Knob("script_timeout_s", "LARK_SCRIPT_TIMEOUT", None, _seconds(1, 3600)),
    _Knob("policy_script", "STARTER_NETWORK_POLICY_SCRIPT_PATH", None, _program),
    _Knob(
        "allowed_network_types",
        "LARK_ALLOWED_NETWORK_TYPES",
        "LarkAllowedNetworkTypes",
        _choices(NETWORK_TYPES),
    ),
    _Knob(
        "allowed_address_types",
        "LARK_ALLOWED_ADDRESS_TYPES",
        "LarkAllowedAddressTypes",
        _choices(ADDRESS_TYPES),
    ),
    _Knob("force_accounting", "LARK_FORCE_ACCOUNTING", None, _bool),
    _Knob("firewall_backend", "LARK_FIREWALL_BACKEND", None, _choice(FIREWALL_BACKENDS)),
    _Knob("iptables_command", "LARK_IPTABLES", None, _choice(IPTABLES_COMMANDS)),
    _Knob("connection_rules", "LARK_CONNECTION_POLICY", "LarkConnectionPolicy", _connection_rules),
    _Knob(
        "connection_default",
        "LARK_CONNECTION_DEFAULT",
        "LarkConnectionDefault",
        _choice(("allow", "deny")),
    ),
    _Knob("audit_dir", "LARK_AUDIT_DIR", None, _path),
    _Knob("max_jobs_per_user", "LARK_MAX_JOBS_PER_USER", None, _count(1, 65536)),
    _Knob("audit_max_bytes", "LARK_AUDIT_MAX_BYTES", None, _bytes(4096, 1024**4)),
    _Knob("job_mtu", "LARK_JOB_MTU", None, _count(1280, 65535)),  # (IPv6's minimum)
)


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


_FLAGS = {"iptables_command": "iptables", "connection_rules": "connection-policy"}


def _flag(field: str) -> str:
    """The ``run`` flag of a setting, for messages."""
    return _FLAGS.get(field, field.removesuffix("_s").replace("_", "-"))


MACHINE_ATTRIBUTES = tuple(k.machine for k in KNOBS if k.machine)


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
    values: dict[str, Any] = {}
    for knob in KNOBS:
        candidates = [(cli.get(knob.field), f"command line --{_flag(knob.field)}")]
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


def config_machine_ad(config: Mapping[str, str]) -> classad2.ClassAd:
    """The admin's machine attributes as the HTCondor config defines them.

    Under ``wrap`` the machine-ad file is the caller's to write, so Lark's machine-ad
    settings come from where the startd itself takes them: the config macros an admin
    publishes through STARTD_ATTRS (``LarkNetworkType = ifThenElse(TARGET.X, ...)``), which
    Lark evaluates against the job ad as the startd would.
    """
    ad = classad2.ClassAd()
    for attr in MACHINE_ATTRIBUTES:
        text = config.get(attr)
        if text is None:
            continue
        try:
            if ads.expression_depth(text) > ads.MAX_EXPR_DEPTH:
                raise ValueError("nested too deeply")
            ad[attr] = classad2.ExprTree(text)
        except (ValueError, classad2.ClassAdException) as exc:
            raise ConfigError(
                f"{attr} {_shown(text)} (HTCondor config) is not a ClassAd expression"
            ) from exc
    return ad


def root_htcondor_config() -> Mapping[str, str]:
    """The HTCondor config, from root's files only (for ``wrap``, whose caller is anyone).

    sudo resets the environment, but a site's sudoers may keep some of it. HTCondor takes
    ``_CONDOR_<KNOB>`` variables as settings and ``CONDOR_CONFIG`` as its file: the former
    are dropped, the latter must be a root-owned file reached through root's directories.
    """
    for key in [k for k in os.environ if k.upper().startswith("_CONDOR_")]:
        del os.environ[key]
    path = os.environ.get("CONDOR_CONFIG") or "/etc/condor/condor_config"
    if path == "ONLY_ENV" or not os.path.lexists(path) or path == os.devnull:
        return {}
    check_root_file(path, "HTCondor config")
    return htcondor_config()


def htcondor_config() -> Mapping[str, str]:
    """HTCondor's config when this node has one; imported lazily since htcondor2 is slow to load."""
    path = os.environ.get("CONDOR_CONFIG") or "/etc/condor/condor_config"
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
