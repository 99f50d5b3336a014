"""Lark's DHCPv4 client, usable without Lark.

Layers (each usable alone):
* ``dhcp.message`` / ``dhcp.options`` -- the sans-IO codec: bytes in, a frozen
  Message out (or MalformedMessage), and back.
* the state machine and the trio driver come next (issue 3).
"""

from .errors import DhcpError, LocalProtocolError, MalformedMessage
from .message import Message, decode, encode
from .options import MessageType

__all__ = [
    "DhcpError",
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageType",
    "decode",
    "encode",
]
