"""DHCP options (RFC 2132 and friends): the codes we use, and the TLV codec.

Decoding follows RFC 3396: every instance of one code is concatenated, in
the order the options, file and sname areas are read, so long options
(classless routes, big client ids) survive being split by a server.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from enum import IntEnum

from .errors import MalformedMessage

PAD, END = 0, 255
SUBNET_MASK = 1
ROUTER = 3
DNS_SERVERS = 6
HOSTNAME = 12
DOMAIN_NAME = 15
INTERFACE_MTU = 26
REQUESTED_ADDRESS = 50
LEASE_TIME = 51
OVERLOAD = 52
MESSAGE_TYPE = 53
SERVER_ID = 54
PARAMETER_REQUEST_LIST = 55
MESSAGE = 56
MAX_MESSAGE_SIZE = 57
RENEWAL_TIME = 58  # T1
REBINDING_TIME = 59  # T2
VENDOR_CLASS_ID = 60
CLIENT_ID = 61
CLASSLESS_ROUTES = 121

OVERLOAD_FILE, OVERLOAD_SNAME = 1, 2


class MessageType(IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


def decode_area(data: bytes, into: dict[int, bytes], where: str) -> None:
    """Parse one option area into ``into``, concatenating repeated codes (RFC 3396 section 7)."""
    i = 0
    while i < len(data):
        code = data[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            return
        if i + 1 >= len(data):
            raise MalformedMessage(f"option {code} in {where} has no length")
        length = data[i + 1]
        if i + 2 + length > len(data):
            raise MalformedMessage(f"option {code} in {where} runs past the end")
        into[code] = into.get(code, b"") + data[i + 2 : i + 2 + length]
        i += 2 + length


def encode_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """TLVs in the given order, long values split into 255-byte pieces (RFC 3396), then END."""
    out = bytearray()
    for code, value in options:
        if code in (PAD, END):
            raise ValueError(f"option {code} cannot carry a value")
        if not value:
            out += bytes((code, 0))
        for start in range(0, len(value), 255):
            piece = value[start : start + 255]
            out += bytes((code, len(piece))) + piece
    out.append(END)
    return bytes(out)


# -- typed views ------------------------------------------------------------


def u32(value: bytes, code: int) -> int:
    if len(value) != 4:
        raise MalformedMessage(f"option {code} must be 4 bytes, not {len(value)}")
    return int.from_bytes(value, "big")


def u16(value: bytes, code: int) -> int:
    if len(value) != 2:
        raise MalformedMessage(f"option {code} must be 2 bytes, not {len(value)}")
    return int.from_bytes(value, "big")


def address(value: bytes, code: int) -> ipaddress.IPv4Address:
    if len(value) != 4:
        raise MalformedMessage(f"option {code} must be one address, not {len(value)} bytes")
    return ipaddress.IPv4Address(value)


def addresses(value: bytes, code: int) -> tuple[ipaddress.IPv4Address, ...]:
    if not value or len(value) % 4:
        raise MalformedMessage(f"option {code} must be a list of addresses")
    return tuple(ipaddress.IPv4Address(value[i : i + 4]) for i in range(0, len(value), 4))


def text(value: bytes) -> str:
    """NVT ASCII, possibly NUL-terminated; anything else is replaced, never trusted."""
    raw = value.split(b"\0", 1)[0]
    return "".join(chr(b) if 32 <= b < 127 else "?" for b in raw)


Route = tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]


def classless_routes(value: bytes) -> tuple[Route, ...]:
    """RFC 3442: (width, significant octets of the destination, router) repeated."""
    routes, i = [], 0
    while i < len(value):
        width = value[i]
        if width > 32:
            raise MalformedMessage(f"classless route width {width} is over 32")
        octets = (width + 7) // 8
        if i + 1 + octets + 4 > len(value):
            raise MalformedMessage("classless route runs past the end of option 121")
        dest = value[i + 1 : i + 1 + octets].ljust(4, b"\0")
        try:
            network = ipaddress.IPv4Network((dest, width))
        except ValueError as exc:  # host bits set past the width
            raise MalformedMessage(
                f"classless route {dest.hex()}/{width} is not a network"
            ) from exc
        gateway = ipaddress.IPv4Address(value[i + 1 + octets : i + 5 + octets])
        routes.append((network, gateway))
        i += 5 + octets
    return tuple(routes)


def encode_classless_routes(routes: Iterable[Route]) -> bytes:
    out = bytearray()
    for network, gateway in routes:
        octets = (network.prefixlen + 7) // 8
        out += bytes((network.prefixlen,)) + network.network_address.packed[:octets]
        out += gateway.packed
    return bytes(out)


def client_id(iaid: int, duid: bytes) -> bytes:
    """RFC 4361 node-specific client identifier: type 255, IAID, DUID.

    One IAID per job interface keeps two jobs on one node from ever sharing an
    identity, even if their MAC addresses were to collide.
    """
    if not 0 <= iaid < 2**32 or not 2 < len(duid) <= 130:
        raise ValueError("IAID must be 32 bits and the DUID 3-130 bytes")
    return bytes((255,)) + struct.pack("!I", iaid) + duid


def duid_ll(mac: bytes) -> bytes:
    """RFC 3315 DUID-LL (type 3, hardware type 1 Ethernet)."""
    return struct.pack("!HH", 3, 1) + mac
