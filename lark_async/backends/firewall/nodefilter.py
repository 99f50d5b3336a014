"""The node's own filtering of forwarded packets, as a NAT job's traffic meets it.

Every base chain at the forward hook sees a packet, whichever table it is in,
and a drop in any of them is final: Lark's own accept does not get a job's
traffic past Docker's FORWARD policy DROP or a hardened site's. So before a job
starts, Lark looks at what the node has: each installed iptables build whose
filter FORWARD would drop gets the job's traffic accepted in LARK-FORWARD
(iptables.py), each such ip6tables build the job's IPv6 traffic; what Lark
cannot open itself (firewalld's zones, a native nft table's forward chain with
policy drop) is said in the log, with what to configure. Nothing is created to
look: iptables-save lists only tables that exist, and a legacy table is read
only when the kernel already has one.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import LarkError
from . import iptables, nft, xtables

log = logging.getLogger("lark.nodefilter")
LEGACY_TABLES = Path("/proc/net/ip_tables_names")  # this namespace's legacy tables
LEGACY_TABLES6 = Path("/proc/net/ip6_tables_names")  # (and its legacy IPv6 tables)
XTABLES = ("filter", "nat", "mangle", "raw", "security")
_CHAIN = re.compile(r"chain (\S+) \{\s*type filter hook forward [^;]*;\s*policy drop;")


@dataclass(frozen=True)
class NodeFilter:
    """Where the node would drop a job's forwarded traffic."""

    accept: dict[str, str] = field(default_factory=dict)  # iptables/ip6tables build -> why
    warnings: list[str] = field(default_factory=list)  # what Lark cannot open itself


def builds_for(ipv4: bool, ipv6: bool) -> list[str]:
    """The builds that see a job's traffic: iptables' for its IPv4, ip6tables' for its IPv6."""
    return [*(iptables.BUILDS if ipv4 else ()), *(iptables.BUILDS6 if ipv6 else ())]


def resolve_build(command: str) -> str:
    """``iptables`` (``ip6tables``) is whichever build the system's alternative points to."""
    if command in (*iptables.BUILDS, *iptables.BUILDS6):
        return command
    version = xtables.run([command, "-V"], None, f"ask {command} for its build")
    return f"{command}-legacy" if "legacy" in version else f"{command}-nft"


def _nft_tables() -> list[tuple[str, str]] | None:
    try:
        return nft.list_tables()
    except LarkError:
        return None  # (no nf_tables: read every build, say nothing of nft tables)


def inspect_node(local_network: str, ipv4: bool = True, ipv6: bool = False) -> NodeFilter:
    """What the node's firewall does with forwarded packets, for a job starting now (with
    IPv4, IPv6 or both: the builds of the others are not read)."""
    result = NodeFilter()
    tables = _nft_tables()
    for build in builds_for(ipv4, ipv6):
        if shutil.which(f"{build}-save") is None:
            continue
        ipv6 = iptables.is_ipv6(build)
        if build.endswith("-legacy"):
            try:
                legacy = (LEGACY_TABLES6 if ipv6 else LEGACY_TABLES).read_text()
                if "filter" not in legacy.split():
                    continue
            except OSError:
                continue
        elif tables is not None and ("ip6" if ipv6 else "ip", "filter") not in tables:
            continue
        try:
            why = iptables.needs_accept(xtables.read(build, f"read the node's {build} rules"))
        except LarkError as exc:
            result.warnings.append(f"{exc}: if its FORWARD drops, so will it the job's traffic")
            continue
        if why is not None:
            result.accept[build] = why
    for family, name in tables or []:
        if name == nft.TABLE or (family in ("ip", "ip6") and name in XTABLES):
            continue  # (Lark's own; iptables-nft's, read above as iptables)
        if (family, name) == ("inet", "firewalld"):
            result.warnings.append(
                "firewalld runs on this node (nft table inet firewalld) and rejects forwarded "
                "traffic of interfaces in no zone: put the jobs' addresses in its trusted zone "
                f"(firewall-cmd --permanent --zone=trusted --add-source={local_network}; "
                "firewall-cmd --reload)"
            )
            continue
        try:
            text = nft.nft().run(f"list table {family} {name}", f"list table {family} {name}")
        except LarkError:
            continue
        for chain in _CHAIN.findall(text):
            result.warnings.append(
                f"nft table {family} {name} drops forwarded packets by policy (chain {chain}): "
                "Lark cannot accept its jobs' traffic there; add to that chain "
                '`iifname "e_*" accept` and `oifname "e_*" ct state established,related accept`'
            )
    return result
