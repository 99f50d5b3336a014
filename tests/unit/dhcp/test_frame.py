"""Raw-socket framing: what we build parses back, and anything broken is ignored."""

from __future__ import annotations

import ipaddress

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


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_parse_never_raises(data):
    assert frame.parse_udp(data) is None or isinstance(frame.parse_udp(data), bytes)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_fuzz_round_trip(payload):
    built = frame.build_udp(payload, MAC, SERVER, BCAST, src_port=67, dst_port=68)
    assert frame.parse_udp(built) == payload
