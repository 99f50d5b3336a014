"""Lark's DHCPv4 client, usable without Lark.

Layers (each usable alone):
* ``dhcp.message`` / ``dhcp.options`` -- the codec: bytes in, a frozen Message
  out (or MalformedMessage), and back.
* ``dhcp.client`` -- the sans-IO state machine: ``Client.handle(fact)`` returns
  orders (``dhcp.events``); ``Client.next_deadline`` is the one timer.
* the trio driver (sockets and timers) comes next.
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
