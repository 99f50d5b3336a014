"""Pure decisions: settings + ads -> the frozen JobNetwork plan the supervisor carries out."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import classad2

from . import ads, names
from .errors import ConfigError
from .settings import Settings


@dataclass(frozen=True)
class JobNetwork:
    name: str
    mode: str  # nat | bridge | none | off (USE_NETWORK_NAMESPACES = false: no namespace at all)
    address_type: str | None  # local | dhcp | static; None in mode none
    netns: str
    external_interface: str
    internal_interface: str
    chain: str
    local_network: ipaddress.IPv4Network
    accounting: bool
    accounting_interval_s: float
    state_dir: Path
    lock_dir: Path


def _job_id(job_ad: classad2.ClassAd) -> str | None:
    cluster, proc = ads.evaluate(job_ad, "ClusterId"), ads.evaluate(job_ad, "ProcId")
    if type(cluster) is int and type(proc) is int and cluster >= 0 and proc >= 0:
        return f"{cluster}.{proc}"
    return None


def _slot(machine_ad: classad2.ClassAd) -> str | None:
    slot = ads.evaluate(machine_ad, "Name")
    return slot if isinstance(slot, str) else None


def derive_job_name(
    explicit: str | None, job_ad: classad2.ClassAd, machine_ad: classad2.ClassAd, pid: int
) -> str:
    if explicit is not None:
        return names.check_name(explicit)
    return names.derive_name(_slot(machine_ad), _job_id(job_ad), f"p{pid}")


def derive_plan(settings: Settings, name: str) -> JobNetwork:
    mode = settings.network_type if settings.use_network_namespaces else "off"
    address_type = settings.address_type
    if mode == "nat":
        address_type = address_type or "local"
        if address_type != "local":
            raise ConfigError(
                f'LarkAddressType "{address_type}" is not available in NAT mode (only "local")'
            )
    elif mode == "bridge":
        raise ConfigError('LarkNetworkType "bridge" is not supported by this version of Lark yet')
    else:
        address_type = None
    return JobNetwork(
        name=name,
        mode=mode,
        address_type=address_type,
        netns=names.netns_name(name),
        external_interface=names.external_interface(name),
        internal_interface=names.internal_interface(name),
        chain=names.chain_name(name),
        local_network=settings.local_network,
        accounting=settings.accounting and mode in ("nat", "bridge"),
        accounting_interval_s=settings.accounting_interval_s,
        state_dir=settings.state_dir,
        lock_dir=settings.lock_dir,
    )
