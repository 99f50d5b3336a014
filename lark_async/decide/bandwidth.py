"""The job's bandwidth limits, both ways: pure, from the admin's settings and the slot's share.

HTCondor schedules a custom resource (``MACHINE_RESOURCE_NetworkBandwidth``); the slot the
job runs in holds its share (machine ad ``NetworkBandwidth``, set by the startd from the
job's request). That share, in Mbit/s, is the job's limit; without one (no such attribute,
or 0: the job asked for none) the admin's ``LARK_BANDWIDTH_LIMIT``; either direction may
be set apart (``..._INGRESS``: towards the job, ``..._EGRESS``: from it). The job ad is
never a source: a job can only ask for a share, and the startd decides it.

Under ``wrap`` the machine-ad file is the caller's, who could write any share in it: the
share is then not read (``trusted_share=False``), and only the admin's own settings (the
HTCondor config) limit the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import classad2

from ..errors import ConfigError
from .settings import AnyNetwork, Settings, parse_rate_mbit

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


def parse_share(value: object, attribute: str) -> float | None:
    """The slot's share of the resource: None when absent or 0 (no share), ConfigError when
    it is not a rate (negative, a string, an error, absurdly large)."""
    if value is None:
        return None
    if isinstance(value, classad2.Value):
        raise ConfigError(f"{attribute} (machine ad, LARK_BANDWIDTH_RESOURCE) is not a rate")
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        raise ConfigError(
            f"{attribute} {shown[:60]} (machine ad, LARK_BANDWIDTH_RESOURCE) is not a rate "
            "in Mbit/s"
        )
    try:
        return parse_rate_mbit(value)
    except ValueError as exc:
        raise ConfigError(
            f"{attribute} {value:g} (machine ad, LARK_BANDWIDTH_RESOURCE) {exc}"
        ) from None


def derive_bandwidth(
    settings: Settings, share: object = None, trusted_share: bool = True
) -> Bandwidth | None:
    """The job's limits (None: no shaping at all). ``share`` is the slot's value of
    ``settings.bandwidth_resource`` as evaluated from the machine ad (None: absent)."""
    attribute = settings.bandwidth_resource
    base, source = None, ""
    if share is not None and not trusted_share:
        log.info(
            "the slot's %s in the caller's machine ad is not a source under wrap; "
            "LarkBandwidthLimit from the HTCondor config decides",
            attribute,
        )
    elif share is not None:
        base = parse_share(share, attribute)
        source = f"the slot's {attribute}"
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
