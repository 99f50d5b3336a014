"""What the job gets: its requests, within the admin's limits, then the admin's policy script.

Pure except for ``run_policy_script``. A job's ad may *request*
(``WantJobNetworking``, ``LarkNetworkType``, ``InboundConnectivity``,
``OutboundConnectivity``, ``LarkAddressType``, ``NetworkAccounting``); the
admin's settings say what may be granted. A request the node cannot grant is
refused with a reason rather than silently downgraded, except inbound
connectivity, which is a wish: without bridging the job gets NAT.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

import classad2

from . import ads, callouts
from .connpolicy import Rule, admin_policy, parse_rules
from .errors import ConfigError, JobRequestError
from .modes import CHOSEN_NETWORK_TYPES, AddressType, NetworkType
from .settings import Settings

log = logging.getLogger("lark.policy")

# what a policy script may decide, and how each is checked
POLICY_ATTRIBUTES = {
    "LarkNetworkType": "network_type",
    "LarkAddressType": "address_type",
    "LarkNetworkAccounting": "accounting",
}


# what Lark reads of the job ad: its requests (evaluated, bounded, by ads.evaluate_bounded)
JOB_ATTRIBUTES = (
    "WantJobNetworking",
    "LarkNetworkType",
    "InboundConnectivity",
    "OutboundConnectivity",
    "LarkAddressType",
    "NetworkAccounting",
    "LarkAllowedConnections",
)


def _job_bool(job_ad: classad2.ClassAd, attr: str) -> bool | None:
    value = ads.evaluate(job_ad, attr)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise JobRequestError(f"job ad {attr} must be true or false, not {_shown(value)}")
    return value


E = TypeVar("E", bound=StrEnum)


def _job_choice(
    job_ad: classad2.ClassAd, attr: str, kind: type[E], choices: Sequence[E]
) -> E | None:
    value = ads.evaluate(job_ad, attr)
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in choices:
        raise JobRequestError(
            f"job ad {attr} must be one of {', '.join(choices)}, not {_shown(value)}"
        )
    return kind(value.lower())


def _shown(value: object) -> str:
    if value is classad2.Value.Error:
        return "an error"
    return f'"{value}"' if isinstance(value, str) else str(value)


def decide(settings: Settings, job_ad: classad2.ClassAd) -> Settings:
    """The admin's settings with the job's requests applied where they are allowed."""
    mode = settings.network_type
    want = _job_bool(job_ad, "WantJobNetworking")
    asked = _job_choice(job_ad, "LarkNetworkType", NetworkType, CHOSEN_NETWORK_TYPES)
    inbound = _job_bool(job_ad, "InboundConnectivity")
    outbound = _job_bool(job_ad, "OutboundConnectivity")
    allowed = settings.allowed_network_types
    if want is False:
        asked = NetworkType.NONE
    elif asked is None and inbound:
        if NetworkType.BRIDGE in allowed:
            asked = NetworkType.BRIDGE
        else:
            log.info("the job asks for inbound connectivity; this node does not bridge: NAT")
    elif asked is None and outbound is False:
        asked = NetworkType.NONE
    if asked is not None:
        if asked not in allowed:
            raise JobRequestError(
                f'the job asks for network type "{asked}", which this node does not allow '
                f"(allowed: {', '.join(allowed)})"
            )
        mode = asked
    address_type = settings.address_type
    asked_address = _job_choice(job_ad, "LarkAddressType", AddressType, tuple(AddressType))
    if asked_address is not None:
        if asked_address not in settings.allowed_address_types:
            raise JobRequestError(
                f'the job asks for address type "{asked_address}", which this node does not '
                f"allow (allowed: {', '.join(settings.allowed_address_types)})"
            )
        address_type = asked_address
    accounting = settings.accounting
    asked_accounting = _job_bool(job_ad, "NetworkAccounting")
    if asked_accounting is not None and not settings.force_accounting:
        accounting = asked_accounting
    return dataclasses.replace(
        settings,
        network_type=mode,
        address_type=address_type,
        accounting=accounting,
        job_connection_rules=_job_connections(settings, job_ad),
    )


def _job_connections(settings: Settings, job_ad: classad2.ClassAd) -> tuple[Rule, ...] | None:
    """The job's ``LarkAllowedConnections``: only ever a narrowing of the admin's policy."""
    wanted = ads.evaluate(job_ad, "LarkAllowedConnections")
    if wanted is None:
        return None
    if not isinstance(wanted, str):
        raise JobRequestError(
            f"job ad LarkAllowedConnections must be a string of entries, not {_shown(wanted)}"
        )
    try:
        rules = parse_rules(wanted, job=True)
        admin_policy(settings.connection_rules, settings.connection_default).narrowed(rules)
    except ValueError as exc:
        raise JobRequestError(f"job ad LarkAllowedConnections {exc}") from None
    return rules


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
    raise ConfigError(f"policy script {script} printed {attr} = {_shown(value)}, not a valid value")


def run_policy_script(
    settings: Settings,
    script: callouts.Script,
    job_ad: classad2.ClassAd,
    machine_ad: classad2.ClassAd,
) -> Settings:
    """The admin's last word (STARTER_NETWORK_POLICY_SCRIPT_PATH): stdin the ads, stdout
    attributes that override the decision; failure or garbage refuses the job."""
    script.check()
    stdin = callouts.ads_stdin(ads.format_for_script(job_ad), ads.format_for_script(machine_ad))
    out = callouts.run_script(script, [], stdin, "policy", {}, settings.state_dir)
    decided = parse_policy_output(out, script.path)
    if decided:
        log.info("policy script %s decided %s", script.path, decided)
    return dataclasses.replace(settings, **decided)  # type: ignore[arg-type]
