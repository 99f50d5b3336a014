"""Shaping's numbers from a rate, and the tc requests' bytes (the kernel's acceptance is
tests/integration/test_bandwidth.py's)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from lark_async.backends import shaping
from lark_async.backends.netlink import tc
from lark_async.backends.netlink.core import parse_attrs

SEGMENT = shaping.GSO_SEGMENT_BYTES


@pytest.mark.parametrize(
    ("mbit", "rate", "burst", "limit"),
    [
        (10, 1_250_000, SEGMENT, 2 * SEGMENT),  # 2 segments: ~105 ms at 10 Mbit/s
        (200, 25_000_000, SEGMENT, 250_000),  # 10 ms
        (1000, 125_000_000, 125_000, 1_250_000),  # 1 ms burst, 10 ms queue
        (1e6, 125_000_000_000, 125_000_000, 1_250_000_000),
    ],
)
def test_burst_and_queue_come_from_the_rate(mbit, rate, burst, limit):
    shape = shaping.derive_shape(mbit)
    assert (shape.rate_bytes_s, shape.burst_bytes, shape.fifo_limit_bytes) == (rate, burst, limit)
    assert 1514 <= shape.quantum_bytes <= shaping.MAX_QUANTUM_BYTES


def test_the_quantum_is_at_least_a_frame_of_the_links_mtu():
    assert shaping.derive_shape(0.01, mtu=9000).quantum_bytes == 9014


def _options(body: bytes) -> dict[int, bytes]:
    top = parse_attrs(body, 20)
    assert top[tc.TCA_KIND] in (b"htb\0", b"u32\0")
    return parse_attrs(top[tc.TCA_OPTIONS])


def test_an_htb_class_past_4_gbytes_s_carries_64_bit_rates():
    slow = _options(tc.htb_class(3, 1, 1_250_000, 65550, 125_000, "e_x").body)
    assert tc.TCA_HTB_RATE64 not in slow
    parms = slow[tc.TCA_HTB_PARMS]
    assert struct.unpack_from("=I", parms, 8)[0] == 1_250_000  # rate.rate
    assert struct.unpack_from("=I", parms, 24)[0] == tc.ticks(65550 / 1_250_000)  # buffer
    fast = _options(tc.htb_class(3, 1, 125_000_000_000, 1 << 20, 200_000, "e_x").body)
    assert struct.unpack("=Q", fast[tc.TCA_HTB_RATE64])[0] == 125_000_000_000
    assert struct.unpack_from("=I", fast[tc.TCA_HTB_PARMS], 8)[0] == tc.U32_MAX


@pytest.mark.parametrize(
    ("net", "source", "keys"),
    [
        ("10.98.0.0/16", True, [("ffff0000", "0a620000", 12)]),
        ("10.98.0.0/16", False, [("ffff0000", "0a620000", 16)]),
        ("0.0.0.0/0", False, [("00000000", "00000000", 16)]),
        (
            "2001:db8::/48",
            True,
            [("ffffffff", "20010db8", 8), ("ffff0000", "00000000", 12)],
        ),
        ("2001:db8::/32", False, [("ffffffff", "20010db8", 24)]),
    ],
)
def test_u32_matches_the_prefix_word_by_word(net, source, keys):
    request = tc.u32_match(3, 1, ipaddress.ip_network(net), source, tc.handle(1), "e_x")
    info = struct.unpack_from("=I", request.body, 16)[0]
    v6 = ipaddress.ip_network(net).version == 6
    assert info == (1 << 16) | socket.htons(0x86DD if v6 else 0x0800)
    options = _options(request.body)
    assert struct.unpack("=I", options[tc.TCA_U32_CLASSID])[0] == 0x10000  # HTB's direct 1:0
    sel = options[tc.TCA_U32_SEL]
    assert sel[0] == tc.TC_U32_TERMINAL and sel[2] == len(keys)
    found = [
        (
            sel[16 + 16 * i : 20 + 16 * i].hex(),
            sel[20 + 16 * i : 24 + 16 * i].hex(),
            struct.unpack_from("=i", sel, 24 + 16 * i)[0],
        )
        for i in range(len(keys))
    ]
    assert found == keys
