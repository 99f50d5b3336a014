"""The first packet of a connection, as the job's queue hands it over: protocol, source,
destination and (TCP, UDP) destination port. Pure: bytes in, a ``Flow`` or the reason it
is ``Unreadable`` out, never an exception.

The packet comes from the job, which may be root in its namespace and craft it, so what
cannot be read with certainty is unreadable, and the caller refuses it. IPv4 (RFC 791):
options are walked (a source route is unreadable: the packet would go on to an address that
is not its destination), fragments are unreadable (a packet is fragmented after the output
hook that queues it, so a fragment there was made by hand, and a later fragment's
"ports" are payload). IPv6 (RFC 8200 4.1): hop-by-hop options first and destination
options once are walked (their options must tile them); a routing header (the packet
would go on to an address that is not its destination), a fragment header, AH and the
other extension headers are unreadable, as is a chain longer than the queue's copy
(``COPY_BYTES``) or than the packet's own payload length.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .connpolicy import PROTOCOL_NAMES, Address

COPY_BYTES = 256  # what the queue copies of a packet: the fixed header, a few options, ports
TCP, UDP = 6, 17
HOP_BY_HOP, DESTINATION_OPTIONS = 0, 60
_LSRR, _SSRR = 0x83, 0x89
# RFC 8200 4 and the IANA "IPv6 Extension Header Types" registry: headers we do not walk
_REFUSED_EXTENSIONS = {
    43: "a routing header",
    44: "a fragment header",
    51: "an authentication header",
    135: "a mobility header",
    139: "a HIP header",
    140: "a shim6 header",
    253: "an experimental extension header",
    254: "an experimental extension header",
}


@dataclass(frozen=True)
class Flow:
    proto: int
    source: Address
    destination: Address
    port: int | None

    def describe(self) -> str:
        name = PROTOCOL_NAMES.get(self.proto, str(self.proto))
        host = f"[{self.destination}]" if self.destination.version == 6 else str(self.destination)
        return f"{host}:{self.port}/{name}" if self.port else f"{host}/{name}"


@dataclass(frozen=True)
class Unreadable:
    """Why a packet cannot be decided, and its addresses where the fixed header was read."""

    why: str
    source: Address | None = None
    destination: Address | None = None


def parse_flow(packet: bytes) -> Flow | Unreadable:
    if not packet:
        return Unreadable("an empty packet")
    version = packet[0] >> 4
    if version == 4:
        return _ipv4(packet)
    if version == 6:
        return _ipv6(packet)
    return Unreadable(f"IP version {version}")


def _ipv4(packet: bytes) -> Flow | Unreadable:
    if len(packet) < 20:
        return Unreadable("an IPv4 header cut short")
    ihl = (packet[0] & 0x0F) * 4
    total, fragment = struct.unpack_from("!H2xH", packet, 2)
    proto = packet[9]
    source = ipaddress.IPv4Address(packet[12:16])
    destination = ipaddress.IPv4Address(packet[16:20])
    if ihl < 20 or total < ihl:
        return Unreadable("an IPv4 header with impossible lengths", source, destination)
    if fragment & 0x3FFF:  # more fragments, or an offset
        return Unreadable("an IPv4 fragment", source, destination)
    if len(packet) < ihl:
        return Unreadable("IPv4 options past the copy", source, destination)
    why = _ipv4_options(packet[20:ihl])
    if why is not None:
        return Unreadable(why, source, destination)
    return _upper(packet, proto, ihl, total, source, destination)


def _ipv4_options(options: bytes) -> str | None:
    """RFC 791 3.1: why the options make the packet unreadable, or None. A loose or strict
    source route sends it on from its destination to a hop the option names."""
    at = 0
    while at < len(options):
        kind = options[at]
        if kind == 0:  # end of options
            return None
        if kind == 1:  # no operation
            at += 1
            continue
        if at + 2 > len(options) or options[at + 1] < 2:
            return "malformed IPv4 options"
        if kind in (_LSRR, _SSRR):
            return "an IPv4 source route"
        at += options[at + 1]
    return None if at == len(options) else "malformed IPv4 options"


def _ipv6(packet: bytes) -> Flow | Unreadable:
    if len(packet) < 40:
        return Unreadable("an IPv6 header cut short")
    (payload,) = struct.unpack_from("!H", packet, 4)
    header = packet[6]
    source = ipaddress.IPv6Address(packet[8:24])
    destination = ipaddress.IPv6Address(packet[24:40])
    end = 40 + payload  # as the packet says; the copy may be shorter
    offset = 40
    walked: set[int] = set()
    while header in (HOP_BY_HOP, DESTINATION_OPTIONS):
        if header in walked or (header == HOP_BY_HOP and offset != 40):
            return Unreadable("IPv6 extension headers out of order", source, destination)
        walked.add(header)
        if offset + 8 > min(len(packet), end):
            return Unreadable("IPv6 extension headers past the copy", source, destination)
        length = (packet[offset + 1] + 1) * 8
        if offset + length > min(len(packet), end):
            return Unreadable("IPv6 extension headers past the copy", source, destination)
        if not _options_tile(packet, offset + 2, offset + length):
            return Unreadable("malformed IPv6 options", source, destination)
        header = packet[offset]
        offset += length
    if header in _REFUSED_EXTENSIONS:
        return Unreadable(f"IPv6 with {_REFUSED_EXTENSIONS[header]}", source, destination)
    return _upper(packet, header, offset, end, source, destination)


def _options_tile(packet: bytes, start: int, end: int) -> bool:
    """RFC 8200 4.2: type-length-value options (Pad1 a single zero byte) fill the header."""
    at = start
    while at < end:
        if packet[at] == 0:  # Pad1
            at += 1
            continue
        if at + 2 > end:
            return False
        at += 2 + packet[at + 1]
    return at == end


def _upper(
    packet: bytes, proto: int, offset: int, end: int, source: Address, destination: Address
) -> Flow | Unreadable:
    """The upper-layer header at ``offset``; the packet (as it says) ends at ``end``."""
    if proto not in (TCP, UDP):
        return Flow(proto, source, destination, None)
    if offset + 4 > min(len(packet), end):
        return Unreadable("ports cut short", source, destination)
    (port,) = struct.unpack_from("!H", packet, offset + 2)
    return Flow(proto, source, destination, port)
