"""Ethernet / IPv4 / UDP framing for the raw socket, pure: build and parse, with checksums.

Before it has an address the client talks through an AF_PACKET socket, so it
builds whole frames itself and must check everything on the way in: a frame
that is not IPv4/UDP to port 68, has a bad header or checksum, or is cut
short, is not a DHCP reply for us. parse_udp() returns the UDP payload or
None; it never raises.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_P_IP = 0x0800
IPPROTO_UDP = 17
CLIENT_PORT, SERVER_PORT = 68, 67
BROADCAST_MAC = b"\xff" * 6
_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


def checksum(data: bytes) -> int:
    """RFC 1071 internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_checksum(src: bytes, dst: bytes, udp: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, len(udp))
    value = checksum(pseudo + udp)
    return value or 0xFFFF  # 0 means "no checksum" in UDP over IPv4


def build_udp(
    payload: bytes,
    src_mac: bytes,
    src: ipaddress.IPv4Address,
    dst: ipaddress.IPv4Address,
    dst_mac: bytes = BROADCAST_MAC,
    src_port: int = CLIENT_PORT,
    dst_port: int = SERVER_PORT,
    ident: int = 0,
) -> bytes:
    """A whole Ethernet frame carrying one UDP datagram (TTL 64, DF clear)."""
    udp_len = _UDP.size + len(payload)
    udp = _UDP.pack(src_port, dst_port, udp_len, 0) + payload
    udp = udp[:6] + struct.pack("!H", _udp_checksum(src.packed, dst.packed, udp)) + udp[8:]
    header = _IP.pack(
        0x45, 0x10, _IP.size + udp_len, ident, 0, 64, IPPROTO_UDP, 0, src.packed, dst.packed
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return _ETH.pack(dst_mac, src_mac, ETH_P_IP) + header + udp


def parse_udp(frame: bytes, dst_port: int = CLIENT_PORT, check_udp: bool = True) -> bytes | None:
    """The UDP payload of an IPv4/UDP frame to ``dst_port`` with valid checksums, else None.

    ``check_udp=False`` when the kernel says the UDP checksum is not filled in yet
    (checksum offload on veth and bridges: PACKET_AUXDATA's TP_STATUS_CSUMNOTREADY).
    """
    if len(frame) < _ETH.size + _IP.size + _UDP.size:
        return None
    _dst, _src, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_IP:
        return None
    ip = frame[_ETH.size :]
    version_ihl, _tos, total, _id, frag, _ttl, proto, _sum, src, dst = _IP.unpack_from(ip)
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < _IP.size or proto != IPPROTO_UDP:
        return None
    if total < ihl + _UDP.size or total > len(ip) or frag & 0x3FFF:  # no fragments
        return None
    if checksum(ip[:ihl]) != 0:
        return None
    udp = ip[ihl:total]
    _sport, dport, length, udp_sum = _UDP.unpack_from(udp)
    if dport != dst_port or length < _UDP.size or length > len(udp):
        return None
    udp = udp[:length]
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, length)
    if check_udp and udp_sum and checksum(pseudo + udp):
        return None
    return udp[_UDP.size :]
