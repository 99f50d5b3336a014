"""IPv6/UDP frames a client builds from a bridge port's side, and what it accepts back."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from dhcp.frame import checksum
from dhcp6 import frame
from dhcp6.trio_driver import reply_filter

MAC = bytes.fromhex("020000000a01")
LL = ipaddress.IPv6Address("fe80::ff:fe00:a01")
SERVER = ipaddress.IPv6Address("fe80::1")
GROUP = ipaddress.IPv6Address("ff02::1:2")


def reply(payload: bytes = b"\x07abc") -> bytes:
    """A server's reply to the client's port, unicast to its MAC and link-local address."""
    return frame.build_udp(payload, b"\x02" * 6, SERVER, LL, MAC, 547, 546)


def test_a_solicit_goes_to_the_group_from_the_link_local_with_hop_limit_one():
    data = frame.build_udp(b"\x01\x00\x00\x01", MAC, LL, GROUP)
    assert data[:6] == bytes.fromhex("333300010002") and data[6:12] == MAC
    assert data[12:14] == b"\x86\xdd"
    first, length, nxt, hops = struct.unpack_from("!IHBB", data, 14)
    assert (first >> 28, length, nxt, hops) == (6, 8 + 4, 17, 1)
    assert data[22:38] == LL.packed and data[38:54] == GROUP.packed
    assert struct.unpack_from("!HHH", data, 54) == (546, 547, 12)
    pseudo = LL.packed + GROUP.packed + struct.pack("!I3xB", 12, 17)
    assert checksum(pseudo + data[54:]) == 0
    with pytest.raises(ValueError, match="unicast"):
        frame.build_udp(b"", MAC, LL, SERVER)


def test_a_reply_is_taken_apart_and_its_checksum_checked():
    data = reply()
    assert frame.parse_udp(data) == b"\x07abc"
    corrupt = data[:-1] + bytes([data[-1] ^ 1])
    assert frame.parse_udp(corrupt) is None
    assert frame.parse_udp(corrupt, check_udp=False) == b"\x07ab" + bytes([data[-1] ^ 1])
    zero = data[:60] + b"\0\0" + data[62:]  # UDP over IPv6 without a checksum
    assert frame.parse_udp(zero) is None


@pytest.mark.parametrize(
    "cut",
    [
        lambda d: d[:61],  # shorter than the headers
        lambda d: d[:-1],  # payload length beyond the frame
        lambda d: d[:12] + b"\x08\x00" + d[14:],  # IPv4's ethertype
        lambda d: d[:14] + b"\x40" + d[15:],  # version 4
        lambda d: d[:20] + b"\x00" + d[21:],  # a hop-by-hop header first
        lambda d: d[:56] + b"\x02\x23" + d[58:],  # to port 547, not 546
        lambda d: d[:58] + b"\x00\x09" + d[60:],  # UDP length disagrees with IPv6's
        lambda d: d[:18] + b"\x00\x07" + d[20:],  # IPv6 payload length below a UDP header
    ],
)
@pytest.mark.parametrize("check_udp", [True, False])
def test_what_is_not_a_whole_reply_to_our_port_is_none(cut, check_udp):
    """Checked before the checksum, and so also where offload leaves it unchecked."""
    assert frame.parse_udp(cut(reply()), check_udp=check_udp) is None


def test_a_datagram_with_nothing_in_it_is_taken_apart_too():
    """Headers and no payload: an empty payload (the codec then refuses it), not None."""
    assert frame.parse_udp(reply(b"")) == b""
    assert frame.parse_udp(reply(b"")[:-1]) is None


def test_a_checksum_that_comes_out_zero_is_sent_as_ffff():
    """RFC 768/8200: 0 means "no checksum", which UDP over IPv6 may not send, so a sum
    that comes out 0 is sent as 0xFFFF (the same in one's complement); a 0 is refused."""
    draft = reply(b"\x07abc\0\0")
    # the checksum with those two bytes 0, put in their place, makes the sum come out 0
    payload = b"\x07abc" + draft[60:62]
    data = reply(payload)
    assert data[60:62] == b"\xff\xff"
    assert frame.parse_udp(data) == payload
    assert frame.parse_udp(data[:60] + b"\0\0" + data[62:]) is None


def test_the_filter_checks_mac_ethertype_udp_and_port():
    program = reply_filter(MAC)
    hi, lo = struct.unpack("!IH", MAC)
    assert (0x15, 0, 9, hi) in program and (0x15, 0, 7, lo) in program
    assert program[5][3] == 0x86DD and program[7][3] == 17 and program[9][3] == 546
    accept, drop = program[-2], program[-1]
    assert accept == (0x06, 0, 0, 0xFFFF) and drop == (0x06, 0, 0, 0)
    # every "no" lands on the last instruction, the drop
    for i, (code, _jt, jf, _k) in enumerate(program):
        if code == 0x15:
            assert i + 1 + jf == len(program) - 1
