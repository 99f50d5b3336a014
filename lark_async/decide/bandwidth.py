"""The job's bandwidth limits, both ways: pure, from the admin's settings and the slot's share.

HTCondor schedules a custom resource (``MACHINE_RESOURCE_NetworkBandwidth``); the slot the
job runs in holds its share (machine ad ``NetworkBandwidth``, set by the startd from the
job's request). That share, in Mbit/s, is the job's limit; without one (no such attribute,
or 0: the job asked for none) the admin's ``LARK_BANDWIDTH_LIMIT``; either direction may
be set apart (``..._INGRESS``: towards the job, ``..._EGRESS``: from it).

Under ``wrap`` both ads are the caller's, who could write any share in the machine ad: the
share is then not read (``trusted_share=False``). What the startd would have given the
slot is the job's request (``Request<resource>``) within what one slot may hold, so that
is the share there: the request bounded by the admin's per-slot cap from the HTCondor
config (``LARK_BANDWIDTH_SLOT_CAP``, else the node's total ``MACHINE_RESOURCE_<resource>``).
Without a cap the request is not used, and only the admin's own settings limit the job.
Under ``run`` the job ad is never a source: a job only asks, and the startd decides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import classad2

from ..errors import ConfigError, JobRequestError, LarkError
from .request import shown
from .settings import AnyNetwork, Settings, machine_resource_knob, parse_rate_mbit

log = logging.getLogger("lark.bandwidth")


@dataclass(frozen=True)
class Bandwidth:
    """What the job's veth is shaped to; None in a direction: not shaped that way."""

    ingress_mbit: float | None  # towards the job: the node-side end's egress
    egress_mbit: float | None  # from the job: the job-side end's egress
    exempt: tuple[AnyNetwork, ...] = ()  # reached at full speed
    source: str = ""  # what decided it, for the log

    @property
    def attributes(self) -> dict[str, object]:
        """The update ad's ``LarkBandwidthLimitMbit`` (and each direction when they differ)."""
        ingress, egress = self.ingress_mbit, self.egress_mbit
        if ingress == egress:
            return {"LarkBandwidthLimitMbit": _number(ingress)}
        found: dict[str, object] = {}
        if ingress is not None:
            found["LarkBandwidthLimitIngressMbit"] = _number(ingress)
        if egress is not None:
            found["LarkBandwidthLimitEgressMbit"] = _number(egress)
        found["LarkBandwidthLimitMbit"] = _number(min(r for r in (ingress, egress) if r))
        return found


def _number(rate: float | None) -> object:
    assert rate is not None
    return int(rate) if rate == int(rate) else rate


SHARE_SOURCE = "machine ad, LARK_BANDWIDTH_RESOURCE"


def parse_share(
    value: object,
    attribute: str,
    source: str = SHARE_SOURCE,
    error: type[LarkError] = ConfigError,
) -> float | None:
    """A share of the resource (the slot's, or under wrap the job's request): None when
    absent or 0 (no share), ``error`` naming ``attribute`` and its ``source`` when it is not
    a rate (negative, a string, an error, absurdly large)."""
    if value is None:
        return None
    if isinstance(value, classad2.Value):
        raise error(f"{attribute} ({source}) is not a rate")
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise error(f"{attribute} {shown(value)} ({source}) is not a rate in Mbit/s")
    try:
        return parse_rate_mbit(value)
    except ValueError as exc:
        raise error(f"{attribute} {value:g} ({source}) {exc}") from None


def request_attribute(resource: str) -> str:
    """The job ad's request for a machine resource: ``request_<name>`` in a submit file
    becomes ``Request<name>`` (ATTR_REQUEST_PREFIX, src/condor_includes/condor_attributes.h;
    SubmitHash::SetRequestResources, src/condor_utils/submit_utils.cpp), and a partitionable
    slot's share of a custom resource is that request (src/condor_startd.V6/Resource.cpp:
    the default CONSUMPTION_<name> is ``target.Request<name>``; the schedd's split in
    src/condor_schedd.V6/schedd_negotiate.cpp assigns ``<name> = Request<name>``)."""
    return f"Request{resource}"


@dataclass(frozen=True)
class SlotCap:
    """The most one slot may hold of the resource, from the HTCondor config alone."""

    mbit: float | None  # None: no cap, so under wrap the job's request is not used
    source: str  # the knob that set it, or why there is none (for the log)


def slot_cap(settings: Settings, config: Mapping[str, str]) -> SlotCap:
    """``LARK_BANDWIDTH_SLOT_CAP``, else the node's total ``MACHINE_RESOURCE_<resource>``
    when that is a rate. That knob is HTCondor's, which also takes a list of ids (GPUs):
    anything but a rate there is no cap, logged, never an error (the admin's limit then
    decides, which is never more than the admin set)."""
    if settings.bandwidth_slot_cap is not None:
        return SlotCap(settings.bandwidth_slot_cap, "LARK_BANDWIDTH_SLOT_CAP")
    knob = machine_resource_knob(settings.bandwidth_resource)
    raw = config.get(knob)
    if raw is None:
        return SlotCap(None, f"neither LARK_BANDWIDTH_SLOT_CAP nor {knob} is set")
    try:
        return SlotCap(parse_rate_mbit(raw), f"the node's {knob}")
    except ValueError:
        why = f"{knob} {shown(str(raw))} is not a rate in Mbit/s"
        return SlotCap(None, f"LARK_BANDWIDTH_SLOT_CAP is not set and {why}")


def requested_share(
    resource: str, request: object, cap: SlotCap | None
) -> tuple[float | None, str]:
    """Under wrap: the job's request for ``resource`` within ``cap``, and what decided it
    (None: no share). A request that is not a rate is a JobRequestError, when it is used."""
    attribute = request_attribute(resource)
    if cap is None or cap.mbit is None:
        if request is not None:
            log.info(
                "the job's %s is not used under wrap: there is no per-slot cap (%s); "
                "LARK_BANDWIDTH_LIMIT from the HTCondor config decides",
                attribute,
                cap.source if cap is not None else "none given",
            )
        return None, ""
    rate = parse_share(request, attribute, "job ad", JobRequestError)
    if rate is None:
        return None, ""
    limit = f"the per-slot cap {cap.mbit:g} ({cap.source})"
    if rate <= cap.mbit:
        return rate, f"the job's {attribute} {rate:g}, under {limit}"
    return cap.mbit, f"{limit}, under the job's {attribute} {rate:g}"


def derive_bandwidth(
    settings: Settings,
    share: object = None,
    trusted_share: bool = True,
    request: object = None,
    cap: SlotCap | None = None,
) -> Bandwidth | None:
    """The job's limits (None: no shaping at all). ``share`` is the slot's value of
    ``settings.bandwidth_resource`` as evaluated from the machine ad (None: absent). When
    it is not ``trusted_share`` (wrap), the job ad's ``request`` for the resource within
    ``cap`` takes its place."""
    attribute = settings.bandwidth_resource
    base, source = None, ""
    if trusted_share:
        base = parse_share(share, attribute)
        source = f"the slot's {attribute}" if base is not None else ""
    else:
        if share is not None:
            log.info(
                "the slot's %s in the caller's machine ad is not a source under wrap",
                attribute,
            )
        base, source = requested_share(attribute, request, cap)
    if base is None and settings.bandwidth_limit is not None:
        base, source = settings.bandwidth_limit, "LARK_BANDWIDTH_LIMIT"
    ingress = settings.bandwidth_limit_ingress or base
    egress = settings.bandwidth_limit_egress or base
    if ingress is None and egress is None:
        return None
    overrides = [
        name
        for name, value in (
            ("LARK_BANDWIDTH_LIMIT_INGRESS", settings.bandwidth_limit_ingress),
            ("LARK_BANDWIDTH_LIMIT_EGRESS", settings.bandwidth_limit_egress),
        )
        if value is not None
    ]
    source = ", ".join(filter(None, [source, *overrides]))
    return Bandwidth(ingress, egress, settings.bandwidth_exempt, source)
