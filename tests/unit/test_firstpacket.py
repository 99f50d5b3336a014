"""The first packet of a connection, read: IPv4 and IPv6, and what a job may craft."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lark_async.decide.firstpacket import COPY_BYTES, Flow, Unreadable, parse_flow

IP = ipaddress.ip_address
SRC6, DST6 = "2001:db8::2", "2001:db8:1::53"


def ipv4(proto: int, payload: bytes, ihl: int = 5, fragment: int = 0, total: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, total or ihl * 4 + len(payload), 0, fragment, 64, proto,
        0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]),
    )  # fmt: skip
    return header + b"\0" * (ihl * 4 - 20) + payload


def ipv6(next_header: int, payload: bytes, length: int | None = None) -> bytes:
    """A fixed header (RFC 8200 3) from SRC6 to DST6 before ``payload``."""
    size = len(payload) if length is None else length
    return (
        struct.pack("!IHBB", 0x60000000, size, next_header, 64)
        + IP(SRC6).packed
        + IP(DST6).packed
        + payload
    )


def ext(next_header: int, options: bytes = b"\x01\x04\0\0\0\0") -> bytes:
    """An options header (hop-by-hop or destination): next header, length, ``options``
    (default: one PadN filling the 8 bytes)."""
    assert (2 + len(options)) % 8 == 0
    return bytes([next_header, (2 + len(options)) // 8 - 1]) + options


PORTS = struct.pack("!HHII", 40000, 443, 0, 0)  # (source, destination port, TCP's seq/ack)


def with_options(options: bytes) -> bytes:
    assert len(options) % 4 == 0
    header = bytearray(ipv4(17, PORTS, ihl=5 + len(options) // 4))
    header[20 : 20 + len(options)] = options
    return bytes(header)


def test_ipv4_options_are_walked():
    for options in (
        bytes(8),  # end of options, then anything
        b"\x01\x01\x01\x00" + b"\x83\x03\x04\x00",  # (after the end: not read)
        b"\x07\x07\x04" + bytes(5),  # record route
        b"\x44\x08\x05\x00" + bytes(4),  # timestamp
        b"\x94\x04\x00\x00",  # router alert
        b"\x01\x01\x01\x01",
    ):
        flow = parse_flow(with_options(options))
        assert isinstance(flow, Flow) and flow.port == 443, options


def test_ipv4_flows_are_read_from_the_first_packet():
    flow = parse_flow(ipv4(6, PORTS + b"\0" * 8))
    assert flow == Flow(6, IP("10.0.0.1"), IP("10.0.0.2"), 443)
    assert isinstance(flow, Flow) and flow.describe() == "10.0.0.2:443/tcp"
    with_options = parse_flow(ipv4(17, struct.pack("!HH", 5000, 53), ihl=6))
    assert isinstance(with_options, Flow) and with_options.port == 53
    icmp = parse_flow(ipv4(1, b"\x08\0\0\0"))
    assert isinstance(icmp, Flow) and icmp.port is None and icmp.describe() == "10.0.0.2/icmp"
    sctp = parse_flow(ipv4(132, b"\0" * 12))
    assert isinstance(sctp, Flow) and sctp.describe() == "10.0.0.2/132"
    dont_fragment = parse_flow(ipv4(6, PORTS, fragment=0x4000))
    assert isinstance(dont_fragment, Flow) and dont_fragment.port == 443


@pytest.mark.parametrize(
    ("packet", "why", "addressed"),
    [
        (b"", "an empty packet", False),
        (b"\x45" + bytes(18), "an IPv4 header cut short", False),
        (ipv4(6, b"\0\0"), "ports cut short", True),
        (ipv4(6, PORTS, total=22), "ports cut short", True),  # shorter than it is copied
        (ipv4(6, PORTS, ihl=4), "an IPv4 header with impossible lengths", True),
        (ipv4(6, PORTS, total=19), "an IPv4 header with impossible lengths", True),
        (ipv4(6, PORTS, ihl=15)[:40], "IPv4 options past the copy", True),
        (with_options(b"\x83\x07\x04" + bytes(5)), "an IPv4 source route", True),  # loose
        (with_options(b"\x89\x07\x04" + bytes(5)), "an IPv4 source route", True),  # strict
        (with_options(b"\x01\x01\x01\x83\x03\x04\x00\x00"), "an IPv4 source route", True),
        (with_options(b"\x07\x03\x04\x83\x03\x04\x00\x00"), "an IPv4 source route", True),
        (with_options(b"\x07\x01" + bytes(6)), "malformed IPv4 options", True),  # length 1
        (with_options(b"\x07\x00" + bytes(6)), "malformed IPv4 options", True),
        (with_options(b"\x01" * 7 + b"\x07"), "malformed IPv4 options", True),  # no length
        (with_options(b"\x07\x09\x04" + bytes(5)), "malformed IPv4 options", True),  # past
        (ipv4(17, PORTS, fragment=0x2000), "an IPv4 fragment", True),  # more fragments
        (ipv4(17, PORTS, fragment=0x0001), "an IPv4 fragment", True),  # a later one
        (ipv4(17, PORTS, fragment=0x1FFF), "an IPv4 fragment", True),
        (b"\x50" + bytes(60), "IP version 5", False),
        (b"\x00" + bytes(60), "IP version 0", False),
    ],
)
def test_unreadable_ipv4(packet, why, addressed):
    result = parse_flow(packet)
    assert isinstance(result, Unreadable) and result.why == why
    if addressed:
        assert (result.source, result.destination) == (IP("10.0.0.1"), IP("10.0.0.2"))
    else:
        assert (result.source, result.destination) == (None, None)


def test_ipv6_flows_are_read_past_hop_by_hop_and_destination_options():
    plain = parse_flow(ipv6(6, PORTS))
    assert plain == Flow(6, IP(SRC6), IP(DST6), 443)
    assert isinstance(plain, Flow) and plain.describe() == "[2001:db8:1::53]:443/tcp"
    udp = parse_flow(ipv6(17, struct.pack("!HHHH", 5000, 53, 8, 0)))
    assert udp == Flow(17, IP(SRC6), IP(DST6), 53)
    echo = parse_flow(ipv6(58, b"\x80\0\0\0\0\1\0\1"))
    assert echo == Flow(58, IP(SRC6), IP(DST6), None)
    assert isinstance(echo, Flow) and echo.describe() == "[2001:db8:1::53]/icmpv6"
    hop = parse_flow(ipv6(0, ext(17) + PORTS))
    assert hop == Flow(17, IP(SRC6), IP(DST6), 443)
    both = parse_flow(ipv6(0, ext(60, b"\x05\x02\0\0\x01\0") + ext(6, b"\0" * 14) + PORTS))
    assert both == Flow(6, IP(SRC6), IP(DST6), 443)  # router alert; Pad1s
    destination = parse_flow(ipv6(60, ext(6, b"\x01\x0c" + bytes(12)) + PORTS))
    assert destination == Flow(6, IP(SRC6), IP(DST6), 443)
    esp = parse_flow(ipv6(50, bytes(16)))
    assert esp == Flow(50, IP(SRC6), IP(DST6), None)  # (a protocol of its own, no ports)
    nothing = parse_flow(ipv6(59, b""))
    assert nothing == Flow(59, IP(SRC6), IP(DST6), None)
    mapped = parse_flow(ipv6(6, PORTS)[:24] + IP("::ffff:10.0.0.1").packed + PORTS)
    assert isinstance(mapped, Flow) and mapped.destination == IP("::ffff:10.0.0.1")


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x60" + bytes(38), "an IPv6 header cut short"),
        (ipv6(6, b"\0\0"), "ports cut short"),
        (ipv6(6, PORTS, length=3), "ports cut short"),  # its payload, as it says, ends first
        (ipv6(6, PORTS, length=0), "ports cut short"),  # (a jumbogram has no place here)
        (ipv6(17, PORTS)[:42], "ports cut short"),  # the copy ends first
        (ipv6(43, bytes([6, 0, 4, 0]) + bytes(4) + PORTS), "IPv6 with a routing header"),
        (ipv6(0, ext(43) + bytes([6, 0, 4, 0]) + bytes(4) + PORTS), "IPv6 with a routing header"),
        (ipv6(44, bytes([17, 0, 0, 0]) + bytes(4) + PORTS), "IPv6 with a fragment header"),
        (ipv6(60, ext(44) + bytes(8) + PORTS), "IPv6 with a fragment header"),
        (ipv6(51, bytes(24) + PORTS), "IPv6 with an authentication header"),
        (ipv6(135, bytes(8)), "IPv6 with a mobility header"),
        (ipv6(139, bytes(8)), "IPv6 with a HIP header"),
        (ipv6(140, bytes(8)), "IPv6 with a shim6 header"),
        (ipv6(253, bytes(8)), "IPv6 with an experimental extension header"),
        (ipv6(254, bytes(8)), "IPv6 with an experimental extension header"),
        (ipv6(60, ext(0) + ext(6) + PORTS), "IPv6 extension headers out of order"),
        (ipv6(0, ext(0) + ext(6) + PORTS), "IPv6 extension headers out of order"),
        (ipv6(60, ext(60) + ext(6) + PORTS), "IPv6 extension headers out of order"),
        (ipv6(0, ext(60) + ext(60) + ext(6) + PORTS), "IPv6 extension headers out of order"),
        (ipv6(0, bytes([6, 0, 1, 4])), "IPv6 extension headers past the copy"),
        (ipv6(0, ext(6))[:47], "IPv6 extension headers past the copy"),
        (
            ipv6(0, bytes([6, 10, 1, 12]) + bytes(12) + PORTS),
            "IPv6 extension headers past the copy",
        ),
        (ipv6(0, ext(6) + PORTS, length=7), "IPv6 extension headers past the copy"),
        (ipv6(0, ext(6) + PORTS, length=11), "ports cut short"),
        (ipv6(0, bytes([6, 0xFF]) + bytes(6) + PORTS), "IPv6 extension headers past the copy"),
        (ipv6(0, ext(6, b"\x01\x05\0\0\0\0") + PORTS), "malformed IPv6 options"),  # too long
        (ipv6(0, ext(6, b"\x01\x03\0\0\0\x07") + PORTS), "malformed IPv6 options"),  # 1 left
        (ipv6(0, ext(6, b"\0\0\0\0\0\x05") + PORTS), "malformed IPv6 options"),  # no length
        (ipv6(0, ext(6, b"\0\0\0\0\0\x01") + PORTS), "malformed IPv6 options"),
    ],
)
def test_unreadable_ipv6(packet, why):
    result = parse_flow(packet)
    assert isinstance(result, Unreadable), result
    assert result.why == why
    if len(packet) >= 40:
        assert (result.source, result.destination) == (IP(SRC6), IP(DST6))


def test_a_long_chain_of_options_is_read_within_the_copy():
    options = ext(60, b"\x01" + bytes([8 * 12 - 4]) + bytes(8 * 12 - 4))  # 96 bytes
    fits = ipv6(0, options + ext(17) + PORTS)
    assert COPY_BYTES >= 40 + 96 + 8 + 4
    assert parse_flow(fits[:COPY_BYTES]) == Flow(17, IP(SRC6), IP(DST6), 443)
    longer = ext(60, b"\x01" + bytes([8 * 30 - 4]) + bytes(8 * 30 - 4))  # 240 bytes
    packet = ipv6(0, longer + ext(17) + PORTS)
    result = parse_flow(packet[:COPY_BYTES])
    assert isinstance(result, Unreadable) and "past the copy" in result.why
    assert parse_flow(packet) == Flow(17, IP(SRC6), IP(DST6), 443)  # (all of it: read)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_flow_or_a_reason(data):
    result = parse_flow(data)
    assert isinstance(result, Flow | Unreadable)
    if isinstance(result, Flow):
        assert result.proto == data[9 if result.destination.version == 4 else 6] or (
            result.destination.version == 6 and data[6] in (0, 60)
        )
    else:
        assert result.why


@given(
    st.lists(st.sampled_from([0, 60, 43, 44, 51, 6, 17, 58]), min_size=1, max_size=5),
    st.binary(max_size=120),
)
def test_any_chain_of_ipv6_headers_gives_a_flow_or_a_reason(chain, data):
    payload = b"".join(ext(nxt) for nxt in chain[1:]) + data
    result = parse_flow(ipv6(chain[0], payload))
    assert isinstance(result, Flow | Unreadable)
    if isinstance(result, Flow):
        assert result.proto not in (0, 60, 43, 44, 51)


# boundaries (mutation testing found them untested)


def test_headers_exactly_as_long_as_they_say():
    bare = ipv4(50, b"")
    assert len(bare) == 20 and parse_flow(bare) == Flow(50, IP("10.0.0.1"), IP("10.0.0.2"), None)
    optioned = with_options(b"\x01\x01\x01\x01")[:24]
    assert isinstance(parse_flow(optioned), Unreadable)  # (UDP: its ports are missing)
    icmp_options = bytearray(ipv4(1, b"", ihl=6))
    icmp_options[20:24] = b"\x01\x01\x01\x01"
    assert len(icmp_options) == 24 and isinstance(parse_flow(bytes(icmp_options)), Flow)
    chain_end = ipv6(0, ext(59))
    assert len(chain_end) == 48 and parse_flow(chain_end) == Flow(59, IP(SRC6), IP(DST6), None)
    longer = ipv6(0, ext(59, b"\x01\x0c" + bytes(12)))
    assert parse_flow(longer) == Flow(59, IP(SRC6), IP(DST6), None)


def test_large_numbers_are_unsigned():
    big = struct.pack("!HHII", 40000, 50000, 0, 0)
    assert parse_flow(ipv4(17, big, total=40000)) == Flow(17, IP("10.0.0.1"), IP("10.0.0.2"), 50000)
    assert parse_flow(ipv6(17, big, length=40000)) == Flow(17, IP(SRC6), IP(DST6), 50000)


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (b"\x01\x01\x44\x02", None),  # a 2-byte option, last
        (b"\x07\x02\x01\x01", None),
        (b"\x01\x07\x03\x04\x83\x03\x04\x00", "an IPv4 source route"),
    ],
)
def test_ipv4_option_lengths(options, why):
    result = parse_flow(with_options(options))
    if why is None:
        assert isinstance(result, Flow)
    else:
        assert isinstance(result, Unreadable) and result.why == why


def test_an_option_type_on_the_last_byte_of_its_header():
    packet = ipv6(0, bytes([59, 0, 1, 3, 0, 0, 0, 7]))
    assert len(packet) == 48
    result = parse_flow(packet)
    assert isinstance(result, Unreadable) and result.why == "malformed IPv6 options"
