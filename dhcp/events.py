"""Facts in (past tense, carrying ``now``) and orders out (imperatives) of the sans-IO client."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .lease import Lease
from .message import Message

BROADCAST = ipaddress.IPv4Address("255.255.255.255")


# -- inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    now: float


@dataclass(frozen=True)
class PacketReceived:
    now: float
    payload: bytes


@dataclass(frozen=True)
class TimerFired:
    now: float


@dataclass(frozen=True)
class ReleaseRequested:
    now: float


@dataclass(frozen=True)
class ConflictDetected:
    """The driver's address-conflict probe (RFC 5227) found the leased address in use."""

    now: float


# -- actions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Transmit:
    """Send ``message``; ``dest`` is BROADCAST (raw socket, from 0.0.0.0 or the lease while
    rebinding) or the server (UDP from the leased address)."""

    message: Message
    dest: ipaddress.IPv4Address
    src: ipaddress.IPv4Address


@dataclass(frozen=True)
class LeaseBound:
    lease: Lease


@dataclass(frozen=True)
class LeaseRenewed:
    lease: Lease


@dataclass(frozen=True)
class LeaseLost:
    """Stop using the address: ``reason`` is expired, nak, declined or released."""

    lease: Lease
    reason: str


@dataclass(frozen=True)
class GaveUp:
    """No lease within the overall timeout (``reason`` says what was last heard)."""

    reason: str


Input = Started | PacketReceived | TimerFired | ReleaseRequested | ConflictDetected
Action = Transmit | LeaseBound | LeaseRenewed | LeaseLost | GaveUp
