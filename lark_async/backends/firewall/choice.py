"""The firewall chosen once: from the plan for a live job, from the state record for undo
and status. Nothing else looks at the backend setting or the record's ``family``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ...decide.modes import FirewallBackend, NetworkType
from . import iptables_jobs, nft, nft_jobs
from .base import FirewallDriver, FirewallRecordError, JobFirewall

if TYPE_CHECKING:
    from ...decide.plan import JobNetwork

# The record's ``family`` of each backend; a record without one is an nftables NAT job's (as
# every record of one has been): the strings stay as they are, so old records still load.
_FROM_RECORD: dict[str, Callable[[Mapping[str, object]], JobFirewall]] = {
    nft.FAMILY: nft_jobs.NatJob.from_record,
    nft.BRIDGE_FAMILY: nft_jobs.BridgeJob.from_record,
    iptables_jobs.FAMILY: iptables_jobs.IptablesJob.from_record,
}


def driver_for(plan: JobNetwork) -> FirewallDriver | None:
    """The backend of a live job (the plan has refused bridge mode with iptables); None in
    the modes without a veth (none, off)."""
    if plan.mode is NetworkType.BRIDGE:
        return nft_jobs.BridgeDriver()
    if plan.mode is not NetworkType.NAT:
        return None
    if plan.firewall_backend is FirewallBackend.IPTABLES:
        return iptables_jobs.Driver(plan.iptables_command)
    return nft_jobs.NatDriver()


def from_record(details: object) -> JobFirewall:
    """The job's firewall as a state record's firewall step describes it, every value
    checked: anything else is a FirewallRecordError saying what, never another exception."""
    if not isinstance(details, Mapping):
        raise FirewallRecordError("firewall step: not an object")
    family = details.get("family", nft.FAMILY)
    read = _FROM_RECORD.get(family) if isinstance(family, str) else None
    if read is None:
        raise FirewallRecordError(
            f"firewall step: family {family!r} is not one of {', '.join(_FROM_RECORD)}"
        )
    return read(details)
