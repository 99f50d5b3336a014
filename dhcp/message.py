"""BOOTP/DHCP messages (RFC 2131 section 2): a frozen Message, encode() and decode().

decode() raises only MalformedMessage, whatever the bytes: the trio driver
drops such packets and carries on. Options are kept as a mapping of code to
the concatenated value (RFC 3396); option overload (52) is honoured only in
the options area, and a message with one inside file or sname is malformed.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import options as opt
from .errors import MalformedMessage

BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHER = 1
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_SIZE = _FIXED.size  # 236
MIN_SIZE = HEADER_SIZE + len(MAGIC_COOKIE)
ZERO = ipaddress.IPv4Address(0)


@dataclass(frozen=True)
class Message:
    op: int
    xid: int
    chaddr: bytes  # the hardware address (hlen bytes)
    options: Mapping[int, bytes] = field(default_factory=dict)
    secs: int = 0
    flags: int = 0
    ciaddr: ipaddress.IPv4Address = ZERO
    yiaddr: ipaddress.IPv4Address = ZERO
    siaddr: ipaddress.IPv4Address = ZERO
    giaddr: ipaddress.IPv4Address = ZERO
    htype: int = HTYPE_ETHER
    hops: int = 0
    sname: bytes = b""
    file: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        return (
            self.op,
            self.xid,
            self.chaddr,
            tuple(sorted(self.options.items())),
            self.secs,
            self.flags,
            self.ciaddr,
            self.yiaddr,
            self.siaddr,
            self.giaddr,
            self.htype,
            self.hops,
            self.sname,
            self.file,
        )

    @property
    def message_type(self) -> opt.MessageType | None:
        value = self.options.get(opt.MESSAGE_TYPE)
        if value is None or len(value) != 1:
            return None
        try:
            return opt.MessageType(value[0])
        except ValueError:
            return None


def encode(msg: Message, option_order: tuple[int, ...] = ()) -> bytes:
    """Wire bytes; options go first in ``option_order`` (message type first by default)."""
    if len(msg.chaddr) > 16:
        raise ValueError("chaddr is at most 16 bytes")
    header = _FIXED.pack(
        msg.op,
        msg.htype,
        len(msg.chaddr),
        msg.hops,
        msg.xid,
        msg.secs,
        msg.flags,
        msg.ciaddr.packed,
        msg.yiaddr.packed,
        msg.siaddr.packed,
        msg.giaddr.packed,
        msg.chaddr.ljust(16, b"\0"),
        msg.sname.ljust(64, b"\0")[:64],
        msg.file.ljust(128, b"\0")[:128],
    )
    order = option_order or (opt.MESSAGE_TYPE,)
    codes = [c for c in order if c in msg.options]
    codes += sorted(c for c in msg.options if c not in codes)
    return header + MAGIC_COOKIE + opt.encode_options((c, msg.options[c]) for c in codes)


def decode(data: bytes) -> Message:
    """Parse a DHCP message; raise MalformedMessage for anything that is not one."""
    if len(data) < MIN_SIZE:
        raise MalformedMessage(f"{len(data)} bytes is shorter than a DHCP message")
    (
        op,
        htype,
        hlen,
        hops,
        xid,
        secs,
        flags,
        ciaddr,
        yiaddr,
        siaddr,
        giaddr,
        chaddr,
        sname,
        file,
    ) = _FIXED.unpack_from(data)
    if data[HEADER_SIZE:MIN_SIZE] != MAGIC_COOKIE:
        raise MalformedMessage("no DHCP magic cookie")
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedMessage(f"op {op} is neither request nor reply")
    if hlen > 16:
        raise MalformedMessage(f"hardware address length {hlen} is over 16")
    options: dict[int, bytes] = {}
    opt.decode_area(data[MIN_SIZE:], options, "options")
    overload = options.pop(opt.OVERLOAD, None)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise MalformedMessage("option overload must be 1, 2 or 3")
        # RFC 2131 section 4.1: file first, then sname. RFC 2132 section 9.3: option 52 is
        # valid only in the options field; one found inside file or sname makes the message
        # garbage (and could otherwise make a reader loop)
        if overload[0] & opt.OVERLOAD_FILE:
            opt.decode_area(file, options, "file")
            file = b""
        if overload[0] & opt.OVERLOAD_SNAME:
            opt.decode_area(sname, options, "sname")
            sname = b""
        if opt.OVERLOAD in options:
            raise MalformedMessage("option overload inside the file or sname field")
    return Message(
        op=op,
        xid=xid,
        chaddr=chaddr[:hlen],
        options=options,
        secs=secs,
        flags=flags,
        ciaddr=ipaddress.IPv4Address(ciaddr),
        yiaddr=ipaddress.IPv4Address(yiaddr),
        siaddr=ipaddress.IPv4Address(siaddr),
        giaddr=ipaddress.IPv4Address(giaddr),
        htype=htype,
        hops=hops,
        sname=sname.rstrip(b"\0"),
        file=file.rstrip(b"\0"),
    )
