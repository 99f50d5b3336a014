"""Pure decisions: what the job was granted (policy.py) -> the frozen JobNetwork plan the
supervisor carries out. The connection policy comes granted, checked; it is not rebuilt here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import classad2

from ..errors import ConfigError
from . import ads, names
from .bandwidth import Bandwidth, SlotCap, derive_bandwidth
from .connpolicy import ConnectionPolicy
from .modes import (
    CONNECTED,
    AddressType,
    Dhcp6Use,
    FirewallBackend,
    IPv6Mode,
    IPv6Use,
    NetworkType,
)
from .policy import Grant
from .reach import NodePort, Service
from .request import JobRequest
from .scripts import Script
from .settings import DEFAULT_AUDIT_MAX_BYTES, DEFAULT_LOCAL_NETWORK6, Settings


@dataclass(frozen=True)
class JobNetwork:
    name: str
    mode: NetworkType  # OFF: USE_NETWORK_NAMESPACES = false, no namespace at all
    address_type: AddressType | None  # None in modes none and off
    netns: str
    external_interface: str
    internal_interface: str
    chain: str
    local_network: ipaddress.IPv4Network
    accounting: bool
    accounting_interval_s: float
    state_dir: Path
    lock_dir: Path
    bridge: Bridge | None = None  # bridge mode only
    create_script: Script | None = None
    delete_script: Script | None = None
    firewall_backend: FirewallBackend = FirewallBackend.NFTABLES
    iptables_command: str = "iptables"
    connections: ConnectionPolicy | None = None  # None: no queue
    audit_dir: Path | None = None
    audit_max_bytes: int = DEFAULT_AUDIT_MAX_BYTES
    job_mtu: int | None = None  # NAT mode: cap on the uplink's MTU (backends/mtu.py)
    # what the job sees and reaches (decide/reach.py, decide/resolver.py)
    job_dns: tuple[ipaddress.IPv4Address, ...] | None = None  # bridge static: its DNS servers
    job_resolv_conf: Path | None = None  # the admin's resolv.conf for every job, as it is
    loopback_services: tuple[Service, ...] = ()  # the admin's, relayed into the namespace
    node_ports: tuple[NodePort, ...] = ()  # NAT: node ports the job may reach
    job_to_job: bool = False  # NAT: the job may reach other NAT jobs
    kill_grace_s: float = 5.0  # run: a forwarded TERM/INT, then KILL after this
    # NAT and bridge: IPv6 (LARK_IPV6; OFF in mode none), where a NAT job's pair comes from
    ipv6: IPv6Use = IPv6Use.OFF
    ipv6_mode: IPv6Mode = IPv6Mode.NAT66
    local_network6: ipaddress.IPv6Network = DEFAULT_LOCAL_NETWORK6
    routed_prefix6: ipaddress.IPv6Network | None = None
    bandwidth: Bandwidth | None = None  # NAT and bridge: the veth's shaping (None: none)

    @property
    def network6(self) -> ipaddress.IPv6Network:
        """Where the job's IPv6 pair comes from, by LARK_IPV6_MODE."""
        if self.ipv6_mode is IPv6Mode.ROUTED:
            assert self.routed_prefix6 is not None  # (derive_plan refuses it unset)
            return self.routed_prefix6
        return self.local_network6

    def __post_init__(self) -> None:
        """Enum members even when built from words, so ``mode is NetworkType.NAT`` holds."""
        object.__setattr__(self, "mode", NetworkType(self.mode))
        if self.address_type is not None:
            object.__setattr__(self, "address_type", AddressType(self.address_type))
        object.__setattr__(self, "firewall_backend", FirewallBackend(self.firewall_backend))
        object.__setattr__(self, "ipv6", IPv6Use(self.ipv6))
        object.__setattr__(self, "ipv6_mode", IPv6Mode(self.ipv6_mode))


@dataclass(frozen=True)
class Bridge:
    """Bridge mode: which bridge, and how the job gets its address on that LAN."""

    name: str
    device: str | None  # enslaved if Lark has to create the bridge
    static: ipaddress.IPv4Interface | None  # address type static: address with prefix
    gateway: ipaddress.IPv4Address | None  # static only; DHCP brings its own
    dhcp_timeout_s: float
    wait_s: float
    dhcp6: Dhcp6Use = Dhcp6Use.AUTO  # with IPv6 on the LAN (LARK_DHCP6)


def _slot(machine_ad: classad2.ClassAd) -> str | None:
    slot = ads.evaluate(machine_ad, "Name")
    return slot if isinstance(slot, str) else None


SLOT_ATTRIBUTES = ("Name",)  # of the machine ad, for its name


def derive_job_name(
    explicit: str | None,
    request: JobRequest,
    machine_ad: classad2.ClassAd,
    pid: int,
    unique: bool = False,
) -> str:
    """``--name``, else from the slot and job id; with ``unique`` (``wrap``, whose caller
    writes the ads) from the job id and the agent's pid, which no other live agent has."""
    if explicit is not None:
        return names.check_name(explicit)
    if unique:
        return names.derive_agent_name(request.job_id, pid)
    return names.derive_name(_slot(machine_ad), request.job_id, f"p{pid}")


def _bridge(settings: Settings, address_type: AddressType) -> Bridge:
    static = gateway = None
    if address_type is AddressType.LOCAL:
        raise ConfigError(
            'LarkAddressType "local" is for NAT mode; in bridge mode use "dhcp" or "static"'
        )
    if address_type is AddressType.STATIC:
        address = settings.static_address
        if address is None:
            raise ConfigError(
                'LarkAddressType "static" needs LarkInnerAddressIPv4 in the machine ad'
            )
        prefix = settings.static_prefix
        if prefix is None and address.network.prefixlen == 32:
            raise ConfigError(
                f"static address {address.ip} has no prefix: write it as {address.ip}/24 or "
                "set LarkSubnetMask"
            )
        if prefix is not None:
            address = ipaddress.IPv4Interface((address.ip, prefix))
        if address.ip in (address.network.network_address, address.network.broadcast_address):
            raise ConfigError(f"static address {address} is not a host address of its network")
        gateway = settings.gateway
        if gateway is not None and (gateway not in address.network or gateway == address.ip):
            raise ConfigError(f"gateway {gateway} is not another host on {address.network}")
        static = address
    return Bridge(
        name=settings.bridge_name,
        device=settings.bridge_device,
        static=static,
        gateway=gateway,
        dhcp_timeout_s=settings.dhcp_timeout_s,
        wait_s=settings.bridge_wait_s,
        dhcp6=settings.dhcp6,
    )


def derive_plan(
    grant: Grant,
    name: str,
    share: object = None,
    trusted_share: bool = True,
    request: object = None,
    cap: SlotCap | None = None,
) -> JobNetwork:
    """The plan for what ``grant`` gives the job; its connection policy is taken as granted
    (policy.decide checked it), kept only in a mode with a queue. ``share``: the slot's
    value of LARK_BANDWIDTH_RESOURCE, a source only when ``trusted_share``; otherwise (wrap)
    the job's ``request`` for it within the per-slot ``cap`` is (decide/bandwidth.py)."""
    settings = grant.settings
    mode = settings.network_type if settings.use_network_namespaces else NetworkType.OFF
    address_type = settings.address_type
    bridge = None
    if mode is NetworkType.NAT:
        address_type = address_type or AddressType.LOCAL
        if address_type is not AddressType.LOCAL:
            raise ConfigError(
                f'LarkAddressType "{address_type}" is not available in NAT mode (only "local")'
            )
    elif mode is NetworkType.BRIDGE:
        address_type = address_type or AddressType.DHCP
        bridge = _bridge(settings, address_type)
        if settings.firewall_backend is FirewallBackend.IPTABLES:
            raise ConfigError(
                'bridge mode needs LARK_FIREWALL_BACKEND "nftables": bridged frames do not '
                "pass iptables"
            )
    else:
        address_type = None
    ipv6 = _ipv6(settings) if mode in CONNECTED else IPv6Use.OFF
    # (mode none has only loopback; off has no namespace: nothing to guard)
    connections = grant.connections if mode in CONNECTED else None
    bandwidth = (
        derive_bandwidth(settings, share, trusted_share, request, cap)
        if mode in CONNECTED
        else None
    )
    return JobNetwork(
        name=name,
        mode=mode,
        address_type=address_type,
        netns=names.netns_name(name),
        external_interface=names.external_interface(name),
        internal_interface=names.internal_interface(name),
        chain=names.chain_name(name),
        local_network=settings.local_network,
        accounting=settings.accounting and mode in CONNECTED,
        accounting_interval_s=settings.accounting_interval_s,
        state_dir=settings.state_dir,
        lock_dir=settings.lock_dir,
        bridge=bridge,
        create_script=_script("create", settings.create_script, settings, mode),
        delete_script=_script("delete", settings.delete_script, settings, mode),
        firewall_backend=settings.firewall_backend,
        iptables_command=settings.iptables_command,
        connections=connections,
        audit_dir=settings.audit_dir if connections is not None else None,
        audit_max_bytes=settings.audit_max_bytes,
        job_mtu=settings.job_mtu if mode is NetworkType.NAT else None,
        job_dns=settings.job_dns,
        job_resolv_conf=settings.job_resolv_conf,
        loopback_services=settings.loopback_services if mode is not NetworkType.OFF else (),
        node_ports=settings.node_ports,
        job_to_job=settings.job_to_job,
        kill_grace_s=settings.kill_grace_s,
        ipv6=ipv6,
        ipv6_mode=settings.ipv6_mode,
        local_network6=settings.local_network6,
        routed_prefix6=settings.routed_prefix6,
        bandwidth=bandwidth,
    )


def _ipv6(settings: Settings) -> IPv6Use:
    """What of LARK_IPV6 a NAT job can have: the node's side (its addresses and routes, the
    firewall backend's programs: ip6tables for iptables) is looked at by the driver."""
    if settings.ipv6 is IPv6Use.OFF:
        return IPv6Use.OFF
    if settings.ipv6_mode is IPv6Mode.ROUTED and settings.routed_prefix6 is None:
        raise ConfigError(
            'LARK_IPV6_MODE "routed" needs LARK_ROUTED_PREFIX6, the prefix the site routes to '
            'this node (or LARK_IPV6 "off")'
        )
    return settings.ipv6


def _script(kind: str, path: str | None, settings: Settings, mode: NetworkType) -> Script | None:
    """Callouts are about the job's chain and veth: NAT and bridge mode only."""
    if path is None or mode not in CONNECTED:
        return None
    return Script(kind, path, settings.script_timeout_s)
