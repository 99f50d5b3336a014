"""Lark's DHCPv4 client, usable without Lark.

Layers (each usable alone):
* ``dhcp.message`` / ``dhcp.options`` -- the codec: bytes in, a frozen Message
  out (or MalformedMessage), and back.
* ``dhcp.client`` -- the sans-IO state machine: ``Client.handle(fact)`` returns
  orders (``dhcp.events``); ``Client.next_deadline`` is the one timer.
* ``dhcp.trio_driver`` -- the only part with sockets and a clock: ``Sockets``
  (AF_PACKET with a BPF filter for our replies, UDP once bound; open them in
  the interface's network namespace) and ``Driver`` (runs a Client on them).
* ``dhcp.arp`` -- the RFC 5227 address-conflict probe the Driver runs before
  a new lease is reported bound.
"""

from .client import Client, Config, State
from .errors import DhcpError, LocalProtocolError, MalformedMessage
from .events import (
    ConflictDetected,
    GaveUp,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Lease
from .message import Message, decode, encode
from .options import MessageType

__all__ = [
    "Client",
    "Config",
    "ConflictDetected",
    "DhcpError",
    "GaveUp",
    "Lease",
    "LeaseBound",
    "LeaseLost",
    "LeaseRenewed",
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageType",
    "PacketReceived",
    "ReleaseRequested",
    "Started",
    "State",
    "TimerFired",
    "Transmit",
    "decode",
    "encode",
]
