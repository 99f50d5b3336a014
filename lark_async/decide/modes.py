"""The closed sets of words Lark decides by: network types, address types, firewall backends
and the rule families a state record names.

Pure, no imports of Lark. Each is a ``StrEnum``, so a member *is* its string: ads, JSON
state records, environment variables and CLI choices keep the words they always had, and
records written before these enums existed load unchanged (``NetworkType("nat")``).
Code compares members by identity (``plan.mode is NetworkType.BRIDGE``), so a typo is an
AttributeError at import, not a branch that is never taken.
"""

from __future__ import annotations

from enum import StrEnum


class NetworkType(StrEnum):
    """``LarkNetworkType`` (DESIGN.md section 3), and the plan's mode."""

    NAT = "nat"  # the default: its own address pair behind NAT on the node
    BRIDGE = "bridge"  # on the site LAN with an address of its own
    NONE = "none"  # loopback only (HTCondor's WantJobNetworking = false)
    OFF = "off"  # USE_NETWORK_NAMESPACES = false: no namespace at all; a plan's mode only


# what an admin or a job may name (OFF is the admin's USE_NETWORK_NAMESPACES, not a type)
CHOSEN_NETWORK_TYPES = (NetworkType.NAT, NetworkType.BRIDGE, NetworkType.NONE)
# the modes with a veth, a chain, callout scripts, accounting and a connection queue
CONNECTED = frozenset({NetworkType.NAT, NetworkType.BRIDGE})


class AddressType(StrEnum):
    """``LarkAddressType``: how the job's address is found."""

    LOCAL = "local"  # a pair from LARK_LOCAL_NETWORK (NAT mode)
    DHCP = "dhcp"  # from the site's DHCP server, renewed for the job's life (bridge mode)
    STATIC = "static"  # the machine ad's LarkInnerAddressIPv4 (bridge mode)


class IPv6Use(StrEnum):
    """``LARK_IPV6``: whether jobs get IPv6."""

    AUTO = "auto"  # the default: when the node has it (a global address and a default route)
    ON = "on"  # always: a node without IPv6 refuses the job
    OFF = "off"  # IPv4 only (what Lark did before IPv6)


class Dhcp6Use(StrEnum):
    """``LARK_DHCP6``: whether a bridged job's address also comes from DHCPv6."""

    AUTO = "auto"  # the default: once the LAN's router advertisement sets its managed flag
    ON = "on"  # from the start, whatever the routers say; no lease refuses the job
    OFF = "off"  # SLAAC only


class IPv6Mode(StrEnum):
    """``LARK_IPV6_MODE``: how a NAT job's IPv6 reaches the world."""

    NAT66 = "nat66"  # a pair from LARK_LOCAL_NETWORK6 (a ULA), masqueraded by the node
    ROUTED = "routed"  # a pair from LARK_ROUTED_PREFIX6, routed by the site: reachable


class FirewallBackend(StrEnum):
    """``LARK_FIREWALL_BACKEND``: which tool's rules carry the job's chain."""

    NFTABLES = "nftables"
    IPTABLES = "iptables"


class RuleFamily(StrEnum):
    """Where a job's firewall rules live, as the state record's ``family`` names it."""

    INET = "inet"  # nftables, table inet lark (NAT mode)
    BRIDGE = "bridge"  # nftables, table bridge lark (bridge mode)
    IPTABLES = "iptables"  # an iptables chain (NAT mode, LARK_FIREWALL_BACKEND iptables)
