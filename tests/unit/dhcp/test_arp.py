"""The RFC 5227 probe's frame codec and conflict rule (pure)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import select
import socket
import time

import pytest
from helpers.private_net import private_net
from hypothesis import given
from hypothesis import strategies as st

from dhcp import arp
from dhcp.bpf import send_socket

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


# -- the Prober machine: RFC 5227 section 2.1.1 timings ---------------------------------


class Fraction(random.Random):
    """An rng whose uniform(a, b) is always the same fraction of the way from a to b."""

    def __init__(self, f: float) -> None:
        super().__init__(0)
        self.f = f

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.f


CONFIG = arp.ProbeConfig(initial_wait_s=1.0, count=3, interval_s=(1.0, 2.0), final_wait_s=2.0)


def run_probe(f: float, start: float = 10.0) -> list[float]:
    """When each probe goes out, ticking at every deadline; and the time it finishes."""
    addr = A("10.0.0.5")
    p = arp.Prober(ME, addr, CONFIG, Fraction(f))
    p.start(start)
    sent = []
    while not p.finished(p.next_at):
        now = p.next_at
        assert p.tick(now - 0.001) is None  # nothing before it is due
        assert p.tick(now) == arp.build(arp.REQUEST, ME, ZERO, addr)  # due exactly then
        assert p.tick(now) is None  # once
        sent.append(now)
    return [*sent, p.next_at]


@pytest.mark.parametrize(
    ("f", "times"),
    [
        (0.0, [10.0, 11.0, 12.0, 14.0]),  # PROBE_WAIT 0, PROBE_MIN apart, ANNOUNCE_WAIT
        (1.0, [11.0, 13.0, 15.0, 17.0]),  # PROBE_WAIT 1, PROBE_MAX apart
        (0.5, [10.5, 12.0, 13.5, 15.5]),
    ],
)
def test_a_probe_sends_count_probes_on_the_rfc5227_schedule(f, times):
    assert run_probe(f) == pytest.approx(times)


def test_after_the_last_probe_nothing_more_is_sent_and_it_finishes_quiet():
    p = arp.Prober(ME, A("10.0.0.5"), CONFIG, Fraction(0.0))
    p.start(0.0)
    assert [p.tick(t) is not None for t in (0.0, 1.0, 2.0, 4.0, 100.0)] == [True] * 3 + [False] * 2
    assert p.sent == 3 and not p.finished(3.9) and p.finished(4.0)
    assert p.announcement() == arp.build(arp.REQUEST, ME, A("10.0.0.5"), A("10.0.0.5"))


def test_an_answer_ends_the_probe_naming_the_holder():
    addr = A("10.0.0.5")
    p = arp.Prober(ME, addr, CONFIG, Fraction(0.0))
    p.start(0.0)
    p.tick(0.0)
    assert not p.hear(arp.build(arp.REQUEST, ME, ZERO, addr))  # our own probe, looped back
    assert p.hear(arp.build(arp.REPLY, OTHER, addr, ZERO))
    assert p.holder == OTHER and not p.finished(100.0)


# -- the sockets, in the kernel on loopback (root only, as test_bpf.py) -----------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET sockets need root")
PROBE_FOR = A("192.0.2.77")  # TEST-NET-1: no host anywhere holds it


def _queued(sock: socket.socket, marker: bytes, wait: float = 0.2) -> list[bytes]:
    out = []
    while select.select([sock], [], [], wait)[0]:
        data = sock.recv(65536)
        if data.endswith(marker):
            out.append(data)
    return out


@needs_root
def test_the_arp_socket_hears_arp_only_and_gives_the_interfaces_mac():
    marker = os.urandom(8)
    probe = arp.build(arp.REQUEST, OTHER, ZERO, PROBE_FOR) + marker  # padded past 42 bytes
    not_arp = probe[:12] + b"\x08\x00" + probe[14:]
    with private_net() as net, contextlib.ExitStack() as stack:
        rx, mac = net.run(lambda: arp.open_socket("lo"))
        stack.enter_context(rx)
        tx = stack.enter_context(net.run(send_socket))
        assert rx.getsockname()[:2] == ("lo", arp.ETH_P_ARP) and mac == bytes(6)  # lo's MAC
        tx.sendto(not_arp, ("lo", 0x0800))
        tx.sendto(probe, ("lo", arp.ETH_P_ARP))
        got = _queued(rx, marker)
        assert got and all(arp.parse(f) == arp.parse(probe) for f in got)


@needs_root
def test_a_ports_arp_socket_hears_what_goes_out_of_the_port_once():
    marker = os.urandom(8)
    probe = arp.build(arp.REQUEST, OTHER, ZERO, PROBE_FOR) + marker
    with private_net() as net, contextlib.ExitStack() as stack:
        rx = stack.enter_context(net.run(lambda: arp.open_port_socket("lo")))
        tx = stack.enter_context(net.run(send_socket))
        tx.sendto(probe[:12] + b"\x08\x00" + probe[14:], ("lo", 0x0800))
        tx.sendto(probe, ("lo", arp.ETH_P_ARP))
        # on loopback a frame passes as sent and again as received: only the first is heard
        assert _queued(rx, marker) == [probe]


@needs_root
def test_drain_drops_what_queued_before_and_returns_at_once():
    marker = os.urandom(8)
    probe = arp.build(arp.REQUEST, OTHER, ZERO, PROBE_FOR) + marker
    with private_net() as net, contextlib.ExitStack() as stack:
        rx, _ = net.run(lambda: arp.open_socket("lo"))
        stack.enter_context(rx)
        tx = stack.enter_context(net.run(send_socket))
        for _ in range(3):
            tx.sendto(probe, ("lo", arp.ETH_P_ARP))
        assert select.select([rx], [], [], 0.2)[0]
        time.sleep(0.05)  # all six copies queued
        arp.drain(rx)
        assert _queued(rx, marker, wait=0.0) == []
        tx.sendto(probe, ("lo", arp.ETH_P_ARP))
        assert _queued(rx, marker)  # still open and hearing
