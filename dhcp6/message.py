"""DHCPv6 client/server messages (RFC 8415 section 8): a frozen Message, encode() and decode().

A message is ``msg-type`` (one octet), ``transaction-id`` (three octets) and options. decode()
raises only MalformedMessage, whatever the bytes, and is bounded: MAX_SIZE bytes, MAX_OPTIONS
options (nested ones counted), nesting only as ``options.WHERE`` allows, every length
checked, no option twice where RFC 8415 section 21 forbids it. Relay messages (section 9)
are for relays and servers, never a client: refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeVar

from . import options as opt
from .errors import MalformedMessage

HEADER_SIZE = 4
# Far above what a server says to one client (a reply with an IA_NA, DNS and a search list
# is a few hundred bytes), far below the 64 KiB a UDP datagram may carry.
MAX_SIZE = 4096
MAX_XID = 0xFFFFFF
_RELAY = (opt.MessageType.RELAY_FORW, opt.MessageType.RELAY_REPL)

OptionT = TypeVar("OptionT", bound=opt.Option)


@dataclass(frozen=True)
class Message:
    msg_type: opt.MessageType
    xid: int
    options: tuple[opt.Option, ...] = ()

    def get(self, kind: type[OptionT]) -> OptionT | None:
        """The message's (first) option of that class, or None."""
        return next((o for o in self.options if isinstance(o, kind)), None)

    def all(self, kind: type[OptionT]) -> tuple[OptionT, ...]:
        return tuple(o for o in self.options if isinstance(o, kind))


def encode(msg: Message) -> bytes:
    if not 0 <= msg.xid <= MAX_XID:
        raise ValueError(f"transaction id {msg.xid} is not 24 bits")
    if msg.msg_type in _RELAY:
        raise ValueError("relay messages are not client/server messages")
    head = struct.pack("!I", (int(msg.msg_type) << 24) | msg.xid)
    return head + opt.encode_options(msg.options)


def decode(data: bytes) -> Message:
    """Parse a client/server message; raise MalformedMessage for anything else."""
    if len(data) < HEADER_SIZE:
        raise MalformedMessage(f"{len(data)} bytes is shorter than a DHCPv6 message")
    if len(data) > MAX_SIZE:
        raise MalformedMessage(f"{len(data)} bytes is over {MAX_SIZE}")
    kind = data[0]
    if kind in _RELAY:
        raise MalformedMessage(f"message type {kind} is a relay message, not for a client")
    try:
        msg_type = opt.MessageType(kind)
    except ValueError:
        raise MalformedMessage(f"message type {kind} is not a client/server message") from None
    xid = int.from_bytes(data[1:4], "big")
    options = opt.decode_options(data[HEADER_SIZE:], opt.Scope.MESSAGE, opt.new_budget())
    return Message(msg_type, xid, options)
