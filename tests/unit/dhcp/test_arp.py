"""The RFC 5227 probe's frame codec and conflict rule (pure)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from dhcp import arp

A = ipaddress.IPv4Address
ME, OTHER = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
ZERO = A("0.0.0.0")


def test_a_probe_is_a_broadcast_request_from_0_0_0_0():
    frame = arp.build(arp.REQUEST, ME, ZERO, A("10.0.0.5"))
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == ME and len(frame) == 42
    parsed = arp.parse(frame)
    assert parsed == arp.Arp(arp.REQUEST, ME, ZERO, A("10.0.0.5"))


def test_someone_else_using_or_probing_for_the_address_is_a_conflict():
    addr = A("10.0.0.5")
    reply = arp.parse(arp.build(arp.REPLY, OTHER, addr, A("10.0.0.9")))
    assert arp.conflicts(reply, addr, ME)
    announce = arp.parse(arp.build(arp.REQUEST, OTHER, addr, addr))
    assert arp.conflicts(announce, addr, ME)
    their_probe = arp.parse(arp.build(arp.REQUEST, OTHER, ZERO, addr))
    assert arp.conflicts(their_probe, addr, ME)


def test_our_own_frames_and_unrelated_traffic_are_not_conflicts():
    addr = A("10.0.0.5")
    assert not arp.conflicts(arp.parse(arp.build(arp.REQUEST, ME, ZERO, addr)), addr, ME)
    asking = arp.parse(arp.build(arp.REQUEST, OTHER, A("10.0.0.9"), addr))
    assert not arp.conflicts(asking, addr, ME)  # someone looking for it is not holding it
    other = arp.parse(arp.build(arp.REPLY, OTHER, A("10.0.0.7"), A("10.0.0.9")))
    assert not arp.conflicts(other, addr, ME)


def test_non_arp_and_short_frames_are_none():
    frame = arp.build(arp.REQUEST, ME, ZERO, A("10.0.0.5"))
    assert arp.parse(frame[:41]) is None
    assert arp.parse(frame[:12] + b"\x08\x00" + frame[14:]) is None


@given(st.binary(max_size=80))
def test_parse_never_raises(data):
    arp.parse(data)
