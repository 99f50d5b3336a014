"""Lark's DHCPv6 client (RFC 8415, addresses only: IA_NA), usable without Lark.

Layers (each usable alone):
* ``dhcp6.message`` / ``dhcp6.options`` -- the codec: bytes in, a frozen Message out (or
  MalformedMessage), and back; bounded in size, option count and nesting.
* ``dhcp6.duid`` -- a job's identity: DUID-LL of its MAC, or DUID-UUID derived from the
  job's identity (uuid5 in Lark's namespace), so that two jobs never share one.
* ``dhcp6.lease`` -- what an ADVERTISE or REPLY must hold to be acted on (each rule with
  its RFC 8415 section), and the Lease it gives; ``dhcp6.build`` -- one builder per
  message the client sends (section 18.2).
* ``dhcp6.client`` -- the sans-IO state machine: ``Client.handle(fact)`` returns orders
  (``dhcp6.events``); ``Client.next_deadline`` is the one timer. Its legal (state, input)
  pairs are the tables ``REPLIES``, ``EVENTS`` and ``IGNORED``; retransmission is section
  15's.
* ``dhcp6.trio_driver`` -- sockets and a clock (shaped like ``dhcp.trio_driver``):
  ``Sockets.open`` in the interface's namespace (UDP [::]:546 and rtnetlink), ``Driver``
  speaks from the link-local address once it is usable to ff02::1:2 port 547. The only
  module importing trio or socket; ``dhcp6.ifaddr`` parses what rtnetlink says.
"""

from .client import Client, State
from .config import Config
from .duid import derive_iaid, derive_job_duid, derive_job_uuid, duid_ll, duid_uuid
from .errors import Dhcp6Error, Dhcp6Failed, LocalProtocolError, MalformedMessage
from .events import (
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
    DadFailed,
    GaveUp,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReconfigureIgnored,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Advert, Lease, LeasedAddress, Refused, Rejected
from .message import Message, decode, encode
from .options import MessageType, Status

__all__ = [
    "ALL_DHCP_RELAY_AGENTS_AND_SERVERS",
    "Advert",
    "Client",
    "Config",
    "DadFailed",
    "Dhcp6Error",
    "Dhcp6Failed",
    "GaveUp",
    "Lease",
    "LeaseBound",
    "LeaseLost",
    "LeaseRenewed",
    "LeasedAddress",
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageType",
    "PacketReceived",
    "ReconfigureIgnored",
    "Refused",
    "Rejected",
    "ReleaseRequested",
    "Started",
    "State",
    "Status",
    "TimerFired",
    "Transmit",
    "decode",
    "derive_iaid",
    "derive_job_duid",
    "derive_job_uuid",
    "duid_ll",
    "duid_uuid",
    "encode",
]
