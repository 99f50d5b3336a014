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

FRAME = 1514


@pytest.mark.parametrize(
    ("mbit", "rate", "burst", "limit"),
    [
        (1, 125_000, 2 * FRAME, 8 * FRAME),  # 4 bursts of 2 frames: ~97 ms at 1 Mbit/s
        (10, 1_250_000, 2 * FRAME, 12_500),  # 10 ms
        (50, 6_250_000, 6_250, 62_500),  # 1 ms burst, 10 ms queue
        (1000, 125_000_000, 125_000, 1_250_000),
        (1e6, 125_000_000_000, 125_000_000, 1_250_000_000),
    ],
)
def test_burst_and_queue_come_from_the_rate(mbit, rate, burst, limit):
    shape = shaping.derive_shape(mbit)
    assert (shape.rate_bytes_s, shape.burst_bytes, shape.fifo_limit_bytes) == (rate, burst, limit)
    assert shape.short_rate_bytes_s == rate // 10
    assert FRAME <= shape.quantum_bytes <= shaping.MAX_QUANTUM_BYTES


def test_the_quantum_and_burst_are_at_least_frames_of_the_links_mtu():
    shape = shaping.derive_shape(0.01, mtu=9000)
    assert (shape.quantum_bytes, shape.burst_bytes) == (9014, 2 * 9014)
    assert shape.short_rate_bytes_s >= 1


def _options(body: bytes) -> dict[int, bytes]:
    top = parse_attrs(body, 20)
    assert top[tc.TCA_KIND] in (b"htb\0", b"u32\0", b"tbf\0")
    return parse_attrs(top[tc.TCA_OPTIONS])


def test_an_htb_class_past_4_gbytes_s_carries_64_bit_rates():
    slow = _options(
        tc.htb_class(3, 0x10010, 0x10001, 125_000, 1_250_000, 6550, 1514, 1, "e_x").body
    )
    assert tc.TCA_HTB_RATE64 not in slow
    parms = slow[tc.TCA_HTB_PARMS]
    assert struct.unpack_from("=I", parms, 8)[0] == 125_000  # rate.rate
    assert struct.unpack_from("=I", parms, 20)[0] == 1_250_000  # ceil.rate
    buffer, cbuffer, quantum, level, prio = struct.unpack_from("=IIIII", parms, 24)
    assert (buffer, cbuffer) == (tc.ticks(6550 / 125_000), tc.ticks(6550 / 1_250_000))
    assert (quantum, level, prio) == (1514, 0, 1)
    fast = _options(
        tc.htb_class(3, 0x10001, 0x10000, 5, 125_000_000_000, 1 << 20, 200_000, 0, "e_x").body
    )
    assert struct.unpack("=Q", fast[tc.TCA_HTB_RATE64])[0] == 5
    assert struct.unpack("=Q", fast[tc.TCA_HTB_CEIL64])[0] == 125_000_000_000
    assert struct.unpack_from("=I", fast[tc.TCA_HTB_PARMS], 20)[0] == tc.U32_MAX


def test_the_splitter_passes_its_burst_in_bytes_and_its_fifo_limit():
    request = tc.tbf(3, 0x110000, 0x10011, shaping.UNBOUNDED_BYTES_S, 6250, 62500, "e_x")
    assert struct.unpack_from("=iII", request.body, 4) == (3, 0x110000, 0x10011)
    options = _options(request.body)
    assert struct.unpack("=I", options[tc.TCA_TBF_BURST])[0] == 6250
    assert struct.unpack("=Q", options[tc.TCA_TBF_RATE64])[0] == 1 << 50
    parms = options[tc.TCA_TBF_PARMS]
    assert len(parms) == 36 and parms[12:24] == bytes(12)  # no peak rate
    assert struct.unpack_from("=I", parms, 24)[0] == 62500  # limit


@pytest.mark.parametrize(("version", "key"), [(4, ("0000ff00", 0)), (6, ("ff000000", 4))])
def test_a_short_packet_is_one_whose_lengths_high_byte_is_zero(version, key):
    request = tc.u32_short(3, 3, version, 0x10010, "e_x")
    info = struct.unpack_from("=I", request.body, 16)[0]
    assert info == (3 << 16) | socket.htons(0x86DD if version == 6 else 0x0800)
    options = _options(request.body)
    assert struct.unpack("=I", options[tc.TCA_U32_CLASSID])[0] == 0x10010
    sel = options[tc.TCA_U32_SEL]
    assert sel[2] == 1
    mask, value, offset = sel[16:20].hex(), sel[20:24].hex(), struct.unpack_from("=i", sel, 24)[0]
    assert (mask, value, offset) == (key[0], "00000000", key[1])


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


@pytest.mark.parametrize(
    ("kind", "parents"), [("bfifo", [0x10010]), ("fq_codel", [0x10010, 0x110001])]
)
def test_fq_codel_also_replaces_the_splitters_fifo(kind, parents):
    shape = shaping.derive_shape(50)
    requests = shaping._leaves(3, kind, shape, "e_x")
    assert [struct.unpack_from("=I", r.body, 12)[0] for r in requests] == parents
    assert all(parse_attrs(r.body, 20)[tc.TCA_KIND] == kind.encode() + b"\0" for r in requests)


def test_the_tree_shares_the_limit_between_short_packets_and_the_rest():
    shape = shaping.derive_shape(50)
    root, every, short, bulk, splitter = shaping._requests(3, shape, "e_x")
    glob = parse_attrs(parse_attrs(root.body, 20)[tc.TCA_OPTIONS])[tc.TCA_HTB_INIT]
    assert struct.unpack_from("=I", glob, 8)[0] == shaping.BULK  # the default class

    def rates(request):
        parms = _options(request.body)[tc.TCA_HTB_PARMS]
        rate, ceil = struct.unpack_from("=I", parms, 8)[0], struct.unpack_from("=I", parms, 20)[0]
        return rate, ceil, struct.unpack_from("=I", parms, 40)[0]  # prio

    assert rates(every) == (6_250_000, 6_250_000, 0)
    assert rates(short) == (625_000, 6_250_000, 0)
    assert rates(bulk) == (5_625_000, 6_250_000, 1)
    assert struct.unpack_from("=I", splitter.body, 12)[0] == 0x10011  # under 1:11
