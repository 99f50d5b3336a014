"""What the job gets: its requests, within the admin's limits, then the admin's policy script.

Pure except for ``run_policy_script``. A job may *request* (request.py reads them from its
ad: ``WantJobNetworking``, ``LarkNetworkType``, ``InboundConnectivity``,
``OutboundConnectivity``, ``LarkAddressType``, ``NetworkAccounting``,
``LarkAllowedConnections``); the admin's settings say what may be granted. A request the
node cannot grant is refused with a reason rather than silently downgraded, except inbound
connectivity, which is a wish: without bridging the job gets NAT. The result is a Grant:
the settings with the job's requests applied and the connection policy its queue
enforces, checked here once; the plan takes both as they are.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from ..errors import ConfigError, JobRequestError
from . import ads
from .connpolicy import ConnectionPolicy, job_policy
from .modes import CHOSEN_NETWORK_TYPES, AddressType, NetworkType
from .request import JobRequest, clipped, shown
from .settings import Settings

log = logging.getLogger("lark.policy")

# what a policy script may decide, and how each is checked
POLICY_ATTRIBUTES = {
    "LarkNetworkType": "network_type",
    "LarkAddressType": "address_type",
    "LarkNetworkAccounting": "accounting",
}


@dataclass(frozen=True)
class Grant:
    """What the job gets: the settings with its requests applied, and the connection
    policy its queue enforces (None: no queue), already narrowed to the job's own list."""

    settings: Settings
    connections: ConnectionPolicy | None


def decide(settings: Settings, request: JobRequest) -> Grant:
    """The admin's settings with the job's requests applied where they are allowed."""
    mode = settings.network_type
    asked = request.network_type
    allowed = settings.allowed_network_types
    if request.want_networking is False:
        asked = NetworkType.NONE
    elif asked is None and request.inbound:
        if NetworkType.BRIDGE in allowed:
            asked = NetworkType.BRIDGE
        else:
            log.info("the job asks for inbound connectivity; this node does not bridge: NAT")
    elif asked is None and request.outbound is False:
        asked = NetworkType.NONE
    if asked is not None:
        if asked not in allowed:
            raise JobRequestError(
                f'the job asks for network type "{asked}", which this node does not allow '
                f"(allowed: {', '.join(allowed)})"
            )
        mode = asked
    address_type = settings.address_type
    if request.address_type is not None:
        if request.address_type not in settings.allowed_address_types:
            raise JobRequestError(
                f'the job asks for address type "{request.address_type}", which this node '
                f"does not allow (allowed: {', '.join(settings.allowed_address_types)})"
            )
        address_type = request.address_type
    accounting = settings.accounting
    if request.accounting is not None and not settings.force_accounting:
        accounting = request.accounting
    granted = dataclasses.replace(
        settings, network_type=mode, address_type=address_type, accounting=accounting
    )
    return Grant(granted, _connections(settings, request))


def _connections(settings: Settings, request: JobRequest) -> ConnectionPolicy | None:
    """The admin's policy, narrowed by the job's ``LarkAllowedConnections``, which may
    only ever take away; checked whatever the mode (a policy script may still change it)."""
    try:
        return job_policy(
            settings.connection_rules, settings.connection_default, request.allowed_connections
        )
    except ValueError as exc:
        raise JobRequestError(clipped(f"job ad LarkAllowedConnections {exc}")) from None


def parse_policy_output(text: str, script: str) -> dict[str, object]:
    """Old-syntax attributes the policy script printed; only those it may decide."""
    try:
        ad = ads.parse_ad(text, f"output of policy script {script}")
    except Exception as exc:  # AdError with the line, or a parser failure
        raise ConfigError(str(exc)) from exc
    decided: dict[str, object] = {}
    for attr in ad.keys():  # noqa: SIM118 -- ClassAd is not a plain mapping
        field = POLICY_ATTRIBUTES.get(attr)
        if field is None:
            raise ConfigError(
                f"policy script {script} printed {attr}; it may set only "
                f"{', '.join(POLICY_ATTRIBUTES)}"
            )
        value = ads.evaluate(ad, attr)
        decided[field] = _policy_value(attr, field, value, script)
    return decided


def _policy_value(attr: str, field: str, value: object, script: str) -> object:
    if field == "accounting":
        if isinstance(value, bool):
            return value
    else:
        kind = NetworkType if field == "network_type" else AddressType
        choices = CHOSEN_NETWORK_TYPES if kind is NetworkType else tuple(AddressType)
        if isinstance(value, str) and value.lower() in choices:
            return kind(value.lower())
    raise ConfigError(f"policy script {script} printed {attr} = {shown(value)}, not a valid value")


def apply_policy_output(grant: Grant, text: str, script: str) -> Grant:
    """The admin's last word (STARTER_NETWORK_POLICY_SCRIPT_PATH, run by backends/scripts.py):
    the attributes its output sets override the decision; garbage refuses the job. The
    connection policy stands (a mode without a queue drops it in the plan)."""
    decided = parse_policy_output(text, script)
    if decided:
        log.info("policy script %s decided %s", script, decided)
    settings = dataclasses.replace(grant.settings, **decided)  # type: ignore[arg-type]
    return dataclasses.replace(grant, settings=settings)
