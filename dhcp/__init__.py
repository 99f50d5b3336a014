"""Lark's DHCPv4 client, usable without Lark.

Layers (each usable alone):
* ``dhcp.message`` / ``dhcp.options`` -- the codec: bytes in, a frozen Message
  out (or MalformedMessage), and back.
* ``dhcp.lease`` -- what a reply must hold to be acted on (each rule with its
  RFC), and the Lease it gives; ``dhcp.build`` -- one builder per message the
  client sends (RFC 2131 table 5).
* ``dhcp.client`` -- the sans-IO state machine: ``Client.handle(fact)`` returns
  orders (``dhcp.events``); ``Client.next_deadline`` is the one timer. Its
  legal (state, input) pairs are the tables ``REPLIES`` and ``EVENTS``.
* ``dhcp.trio_driver`` -- the only part with sockets and a clock: ``Sockets``
  (AF_PACKET with a BPF filter for our replies, UDP once bound; open them in
  the interface's network namespace) and ``Driver`` (runs a Client on them).
* ``dhcp.arp`` -- the RFC 5227 address-conflict probe: a pure ``Prober`` the
  client runs inside its machine before a new lease is reported bound (probe
  frames are orders, ARP frames heard are facts), and ``probe()`` to run one
  alone (a static address).
"""

from .client import Client, State
from .config import Config
from .errors import DhcpError, DhcpFailed, LocalProtocolError, MalformedMessage
from .events import (
    AddressInUse,
    ArpReceived,
    ConflictDetected,
    GaveUp,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    SendArp,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Lease, Rejected
from .message import Message, decode, encode
from .options import MessageType

__all__ = [
    "AddressInUse",
    "ArpReceived",
    "Client",
    "Config",
    "ConflictDetected",
    "DhcpError",
    "DhcpFailed",
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
    "Rejected",
    "ReleaseRequested",
    "SendArp",
    "Started",
    "State",
    "TimerFired",
    "Transmit",
    "decode",
    "encode",
]
