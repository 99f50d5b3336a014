"""Ethernet / IPv6 / UDP framing for a client that speaks from a bridge port's side, pure.

A bridged job's client is not in the job's namespace (the job may be root there): it
sends whole frames into the bridge as the job (its MAC, its link-local address) and hears
what the bridge sends out of the job's port, so it builds and checks every header itself.
``parse_udp`` returns the payload of an IPv6/UDP frame to the client's port, or None: a
frame that is not one, is cut short, carries extension headers, or fails its checksum is
not a DHCPv6 message for us. It never raises.
"""

from __future__ import annotations

import ipaddress
import struct

from dhcp.frame import checksum

from .events import CLIENT_PORT, SERVER_PORT

ETH_P_IPV6 = 0x86DD
IPPROTO_UDP = 17
HOP_LIMIT = 1  # RFC 8415 section 14: link-scoped multicast, never past a router
_ETH = struct.Struct("!6s6sH")
_IP6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
HEADERS = _ETH.size + _IP6.size + _UDP.size


def multicast_mac(address: ipaddress.IPv6Address) -> bytes:
    """RFC 2464 section 7: 33:33 and the group's last 32 bits."""
    return b"\x33\x33" + address.packed[12:]


def _pseudo(src: bytes, dst: bytes, length: int) -> bytes:
    """RFC 8200 section 8.1's pseudo-header, which the UDP checksum covers."""
    return src + dst + struct.pack("!I3xB", length, IPPROTO_UDP)


def build_udp(
    payload: bytes,
    src_mac: bytes,
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    dst_mac: bytes | None = None,
    src_port: int = CLIENT_PORT,
    dst_port: int = SERVER_PORT,
) -> bytes:
    """A whole Ethernet frame with one UDP datagram; to a multicast ``dst``, its group MAC."""
    if dst_mac is None:
        if not dst.is_multicast:
            raise ValueError(f"{dst} is unicast: name its MAC")
        dst_mac = multicast_mac(dst)
    udp = _UDP.pack(src_port, dst_port, _UDP.size + len(payload), 0) + payload
    value = checksum(_pseudo(src.packed, dst.packed, len(udp)) + udp) or 0xFFFF  # (never 0)
    udp = udp[:6] + struct.pack("!H", value) + udp[8:]
    header = _IP6.pack(6 << 28, len(udp), IPPROTO_UDP, HOP_LIMIT, src.packed, dst.packed)
    return _ETH.pack(dst_mac, src_mac, ETH_P_IPV6) + header + udp


def parse_udp(frame: bytes, dst_port: int = CLIENT_PORT, check_udp: bool = True) -> bytes | None:
    """The UDP payload of an IPv6/UDP frame (no extension headers) to ``dst_port`` with a
    valid checksum, else None. ``check_udp=False`` where the kernel says the checksum is
    not filled in yet (offload: PACKET_AUXDATA's TP_STATUS_CSUMNOTREADY)."""
    if len(frame) < HEADERS:
        return None
    _dst_mac, _src_mac, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_IPV6:
        return None
    first, length, next_header, _hops, src, dst = _IP6.unpack_from(frame, _ETH.size)
    if first >> 28 != 6 or next_header != IPPROTO_UDP:
        return None
    start = _ETH.size + _IP6.size
    if length < _UDP.size or start + length > len(frame):
        return None
    udp = frame[start : start + length]
    _sport, dport, udp_length, udp_sum = _UDP.unpack_from(udp)
    if dport != dst_port or udp_length != length:
        return None
    if check_udp and (udp_sum == 0 or checksum(_pseudo(src, dst, length) + udp)):
        return None  # (UDP over IPv6 must carry one: RFC 8200 section 8.1)
    return udp[_UDP.size :]
