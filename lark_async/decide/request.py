"""What the job asks for: everything Lark takes from the job ad, read once into a JobRequest.

Pure. The job ad is the job side's to write (DESIGN.md section 4), so its values are
requests, never settings: each attribute here is read with its type checked and its
words taken only from a closed set, and a bad value is one line naming the attribute
(JobRequestError), with the value shown short. Nothing else of the job ad is read --
the ad goes on, as text, only to the admin's scripts. Whether a request is *granted* is
policy.py's question.

The ad is normally the bounded evaluation of ``JOB_ATTRIBUTES`` (``ads.evaluate_bounded``):
plain values, so reading it runs none of the job's expressions. Any ad works, though, so
tests read parsed ads directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import classad2

from ..errors import JobRequestError
from . import ads
from .connpolicy import Rule, parse_rules
from .modes import CHOSEN_NETWORK_TYPES, AddressType, NetworkType

# the job-ad attributes Lark reads; the bounded evaluation takes exactly these
JOB_ATTRIBUTES = (
    "WantJobNetworking",
    "LarkNetworkType",
    "InboundConnectivity",
    "OutboundConnectivity",
    "LarkAddressType",
    "NetworkAccounting",
    "LarkAllowedConnections",
    "ClusterId",
    "ProcId",
)

SHOWN_MAX = 60  # characters of a refused value that a message repeats
MESSAGE_MAX = 300  # characters of a message about the connection list (its entries are long)


@dataclass(frozen=True)
class JobRequest:
    """The job's requests, typed; ``None`` where the job ad does not say."""

    want_networking: bool | None = None  # WantJobNetworking (false: loopback only)
    network_type: NetworkType | None = None  # LarkNetworkType (never OFF)
    inbound: bool | None = None  # InboundConnectivity (a wish for bridging)
    outbound: bool | None = None  # OutboundConnectivity (false: loopback only)
    address_type: AddressType | None = None  # LarkAddressType
    accounting: bool | None = None  # NetworkAccounting
    allowed_connections: tuple[Rule, ...] | None = None  # LarkAllowedConnections, parsed
    job_id: str | None = None  # "<ClusterId>.<ProcId>" when both are whole numbers >= 0


def read_request(job_ad: classad2.ClassAd) -> JobRequest:
    """The job ad's requests, each checked; JobRequestError names the first bad one."""
    return JobRequest(
        want_networking=_bool(job_ad, "WantJobNetworking"),
        network_type=_choice(job_ad, "LarkNetworkType", NetworkType, CHOSEN_NETWORK_TYPES),
        inbound=_bool(job_ad, "InboundConnectivity"),
        outbound=_bool(job_ad, "OutboundConnectivity"),
        address_type=_choice(job_ad, "LarkAddressType", AddressType, tuple(AddressType)),
        accounting=_bool(job_ad, "NetworkAccounting"),
        allowed_connections=_connections(job_ad),
        job_id=_job_id(job_ad),
    )


def shown(value: object) -> str:
    """A refused value as a message repeats it: strings quoted, one line, at most SHOWN_MAX
    characters (a job ad's string may be a megabyte of anything)."""
    if value is classad2.Value.Error:
        return "an error"
    if not isinstance(value, str):
        text = str(value)
        return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX] + "..."
    text = "".join(c if c.isprintable() else "?" for c in value[: SHOWN_MAX + 1])
    return f'"{text}"' if len(text) <= SHOWN_MAX else f'"{text[:SHOWN_MAX]}..."'


def _bool(ad: classad2.ClassAd, attr: str) -> bool | None:
    value = ads.evaluate(ad, attr)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise JobRequestError(f"job ad {attr} must be true or false, not {shown(value)}")
    return value


E = TypeVar("E", bound=StrEnum)


def _choice(ad: classad2.ClassAd, attr: str, kind: type[E], choices: Sequence[E]) -> E | None:
    value = ads.evaluate(ad, attr)
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in choices:
        raise JobRequestError(
            f"job ad {attr} must be one of {', '.join(choices)}, not {shown(value)}"
        )
    return kind(value.lower())


def _connections(ad: classad2.ClassAd) -> tuple[Rule, ...] | None:
    """The job's allow-list, parsed (whether the node allows it is policy.py's question)."""
    wanted = ads.evaluate(ad, "LarkAllowedConnections")
    if wanted is None:
        return None
    if not isinstance(wanted, str):
        raise JobRequestError(
            f"job ad LarkAllowedConnections must be a string of entries, not {shown(wanted)}"
        )
    try:
        return parse_rules(wanted, job=True)
    except ValueError as exc:
        raise JobRequestError(clipped(f"job ad LarkAllowedConnections {exc}")) from None


def clipped(message: str) -> str:
    """At most MESSAGE_MAX characters: an entry the message quotes may be huge."""
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 3] + "..."


def _job_id(ad: classad2.ClassAd) -> str | None:
    """For the job's name only: anything but two whole numbers >= 0 is no id (no error)."""
    cluster, proc = ads.evaluate(ad, "ClusterId"), ads.evaluate(ad, "ProcId")
    if type(cluster) is int and type(proc) is int and cluster >= 0 and proc >= 0:
        return f"{cluster}.{proc}"
    return None
