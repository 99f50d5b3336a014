"""Raw-socket framing: what we build parses back, and anything broken is ignored."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp import frame

MAC = bytes.fromhex("02aabbccddee")
ZERO, BCAST = ipaddress.IPv4Address(0), ipaddress.IPv4Address("255.255.255.255")
SERVER = ipaddress.IPv4Address("10.77.0.1")


def reply(payload: bytes = b"dhcp!") -> bytes:
    return frame.build_udp(payload, MAC, SERVER, BCAST, src_port=67, dst_port=68)


def test_built_frames_parse_back_and_carry_valid_checksums():
    f = frame.build_udp(b"hello", MAC, ZERO, BCAST)
    assert f[:6] == frame.BROADCAST_MAC and f[6:12] == MAC and f[12:14] == b"\x08\x00"
    assert frame.checksum(f[14:34]) == 0
    assert frame.parse_udp(f, dst_port=67) == b"hello"
    assert frame.parse_udp(reply()) == b"dhcp!"


def test_known_checksum_vector():
    # RFC 1071 section 3 example
    assert frame.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@pytest.mark.parametrize(
    ("offset", "value"),
    [
        (12, b"\x86\xdd"),  # not IPv4
        (14, b"\x65"),  # IP version 6
        (23, b"\x06"),  # TCP
        (36, b"\x00\x43"),  # to port 67, not ours
        (20, b"\x20\x00"),  # a fragment
        (24, b"\x12\x34"),  # IP checksum wrong
        (40, b"\x12\x34"),  # UDP checksum wrong
        (42, b"X"),  # payload changed under the UDP checksum
    ],
)
def test_anything_wrong_is_ignored(offset, value):
    f = bytearray(reply())
    f[offset : offset + len(value)] = value
    assert frame.parse_udp(bytes(f)) is None


def test_lying_lengths_and_truncation_are_ignored():
    f = reply()
    for cut in range(len(f)):
        assert frame.parse_udp(f[:cut]) is None
    assert frame.parse_udp(f + b"ethernet padding") == b"dhcp!"


def test_zero_udp_checksum_means_unchecked():
    f = bytearray(reply())
    f[40:42] = b"\0\0"
    assert frame.parse_udp(bytes(f)) == b"dhcp!"


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_parse_never_raises(data):
    assert frame.parse_udp(data) is None or isinstance(frame.parse_udp(data), bytes)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_fuzz_round_trip(payload):
    built = frame.build_udp(payload, MAC, SERVER, BCAST, src_port=67, dst_port=68)
    assert frame.parse_udp(built) == payload


# -- each check of parse_udp on its own: everything else in the frame valid --------------

CLIENT = ipaddress.IPv4Address("10.77.0.68")  # its last two bytes read as port 68


def forge(
    payload: bytes = b"dhcp!",
    *,
    version: int = 4,
    ihl: int = 5,
    total: int | None = None,
    frag: int = 0,
    sport: int = 67,
    dport: int = 68,
    udp_len: int | None = None,
    udp_sum: bool = True,
    dst: ipaddress.IPv4Address = BCAST,
) -> bytes:
    """A frame with the given header fields and checksums that are right for them, so that
    only the field under test can make parse_udp refuse it (``udp_sum=False``: no UDP
    checksum, which means unchecked)."""
    udp = struct.pack("!HHHH", sport, dport, udp_len or 8 + len(payload), 0) + payload
    if udp_sum:
        pseudo = SERVER.packed + dst.packed + struct.pack("!BBH", 0, 17, len(udp))
        udp = udp[:6] + struct.pack("!H", frame.checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    size = max(ihl * 4, 20)
    options = b"\x01" * (size - 20)  # NOPs
    total = 20 + len(options) + len(udp) if total is None else total
    ip = struct.pack(
        "!BBHHHBBH4s4s", version << 4 | ihl, 0, total, 1, frag, 64, 17, 0, SERVER.packed, dst.packed
    )
    ip += options
    ip = ip[:10] + struct.pack("!H", frame.checksum(ip[: ihl * 4])) + ip[12:]
    return frame.BROADCAST_MAC + MAC + b"\x08\x00" + ip + udp


def test_the_forged_frame_is_valid_until_a_field_is_changed():
    assert frame.parse_udp(forge()) == b"dhcp!"
    assert frame.parse_udp(forge(ihl=6)) == b"dhcp!"  # IP options are skipped
    assert frame.parse_udp(forge(udp_sum=False)) == b"dhcp!"


def test_ip_version_other_than_4_is_refused():
    assert frame.parse_udp(forge(version=6)) is None


def test_an_ihl_under_5_is_refused_even_if_what_follows_looks_like_udp_to_port_68():
    # IHL 4: a 16-byte "header" whose checksum is right, and from byte 16 on the destination
    # address 10.77.0.68 reads as ports (10.77 -> 68) and the real source port 8 as a length
    f = forge(b"", ihl=4, sport=8, dst=CLIENT)
    assert frame.parse_udp(f, check_udp=False) is None


@pytest.mark.parametrize("total", [20, 24, 27])
def test_an_ip_total_length_too_short_for_a_udp_header_is_refused(total):
    assert frame.parse_udp(forge(total=total)) is None


def test_an_ip_total_length_past_the_frame_is_refused():
    good = forge()
    assert frame.parse_udp(forge(total=len(good) - 14 + 1)) is None
    assert frame.parse_udp(forge(total=len(good) - 14 + 10)) is None


@pytest.mark.parametrize(("frag", "heard"), [(0x4000, True), (0x2000, False), (0x0001, False)])
def test_dont_fragment_is_fine_more_fragments_or_an_offset_is_not(frag, heard):
    assert (frame.parse_udp(forge(frag=frag)) == b"dhcp!") is heard


def test_a_udp_length_past_the_datagram_or_under_its_header_is_refused():
    assert frame.parse_udp(forge(udp_len=8 + 5 + 1, udp_sum=False)) is None
    assert frame.parse_udp(forge(udp_len=7, udp_sum=False)) is None
    assert frame.parse_udp(forge(udp_len=8 + 3, udp_sum=False)) == b"dhc"  # shorter: cut


def test_another_destination_port_is_refused_whatever_the_checksum():
    assert frame.parse_udp(forge(dport=67, udp_sum=False)) is None
    assert frame.parse_udp(forge(dport=67)) is None
    assert frame.parse_udp(forge(dport=67), dst_port=67) == b"dhcp!"


def test_the_largest_udp_datagram_ipv4_carries_round_trips():
    payload = bytes(range(256)) * 255 + b"x" * 227  # 65507 bytes: 65535 - 20 - 8
    built = frame.build_udp(payload, MAC, SERVER, BCAST, src_port=67, dst_port=68)
    assert frame.parse_udp(built) == payload


def test_the_ip_header_is_exactly_what_build_udp_promises():
    f = frame.build_udp(b"abc", MAC, SERVER, BCAST, src_port=67, dst_port=68)
    version_ihl, tos, total, ident, frag, ttl, proto, _sum, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", f[14:34]
    )
    assert (version_ihl, tos, total, ident, frag, ttl, proto) == (0x45, 0x10, 31, 0, 0, 64, 17)
    assert (src, dst) == (SERVER.packed, BCAST.packed)
    assert struct.unpack("!HHH", f[34:40]) == (67, 68, 11)
    assert frame.build_udp(b"abc", MAC, SERVER, BCAST, ident=0x1234)[18:20] == b"\x12\x34"


def test_header_checksums_of_every_size_are_written():
    # some of these idents give a header checksum over 0x7fff, some under
    sums = set()
    for ident in range(0, 0x10000, 0x0FFF):
        f = frame.build_udp(b"x", MAC, SERVER, BCAST, src_port=67, dst_port=68, ident=ident)
        assert frame.checksum(f[14:34]) == 0 and frame.parse_udp(f) == b"x"
        sums.add(f[24] >= 0x80)
    assert sums == {True, False}


def test_a_udp_checksum_that_comes_to_zero_is_sent_as_ffff():
    # RFC 768: a computed 0 is sent as all ones, since 0 means "no checksum"
    base = b"dhcp"
    pseudo = SERVER.packed + BCAST.packed + struct.pack("!BBH", 0, 17, 8 + len(base) + 2)
    udp = struct.pack("!HHHH", 67, 68, 8 + len(base) + 2, 0) + base
    fix = frame.checksum(pseudo + udp + b"\0\0")  # these two bytes make the sum 0xffff
    payload = base + struct.pack("!H", fix)
    f = frame.build_udp(payload, MAC, SERVER, BCAST, src_port=67, dst_port=68)
    assert f[40:42] == b"\xff\xff"
    assert frame.parse_udp(f) == payload


def test_checksum_pads_an_odd_byte_and_folds_every_carry():
    assert frame.checksum(b"\x01") == 0xFEFF
    assert frame.checksum(b"\x01\x02\x03") == 0xFBFD
    assert frame.checksum(b"\xff\xff\x00\x01") == 0xFFFE  # one carry
    assert frame.checksum(b"\xff\xff\xff\xff\x00\x01") == 0xFFFE  # a carry out of the fold
    assert frame.checksum(b"") == 0xFFFF
