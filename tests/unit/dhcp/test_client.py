"""Timelines with explicit ``now`` against the sans-IO client, and a fake in-memory server."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import random
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dhcp import arp
from dhcp import options as opt
from dhcp.client import (
    MAX_OFFERS,
    QUICK_RETRY_S,
    REQUESTING_ATTEMPTS,
    RESTART_FIRST_S,
    Client,
    Config,
    State,
)
from dhcp.errors import LocalProtocolError
from dhcp.events import (
    BROADCAST,
    AddressInUse,
    ArpReceived,
    ConflictDetected,
    GaveUp,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    SendArp,
    Started,
    TimerFired,
    Transmit,
)
from dhcp.message import BOOTREPLY, ZERO, Message, decode, encode

MT = opt.MessageType
IP = ipaddress.IPv4Address
MAC = bytes.fromhex("02aabbccddee")
CID = opt.client_id(7, opt.duid_ll(MAC))
SERVER, OTHER = IP("10.77.0.1"), IP("10.77.0.2")
ADDR = IP("10.77.0.50")


def make_client(**kw) -> Client:
    kw.setdefault("probe", None)
    config = Config(chaddr=MAC, client_id=CID, renew_retry_min_s=1.0, **kw)
    return Client(config, rng=random.Random(1))


def reply(request: Message, kind: MT, server=SERVER, yiaddr=ADDR, lease=100, extra=None) -> bytes:
    o = {
        opt.MESSAGE_TYPE: bytes([kind]),
        opt.SERVER_ID: server.packed,
        opt.CLIENT_ID: CID,
    }
    if kind in (MT.OFFER, MT.ACK):
        o[opt.LEASE_TIME] = struct.pack("!I", lease)
        o[opt.SUBNET_MASK] = IP("255.255.255.0").packed
        o[opt.ROUTER] = SERVER.packed
    o.update(extra or {})
    return encode(Message(op=BOOTREPLY, xid=request.xid, chaddr=MAC, yiaddr=yiaddr, options=o))


def only_transmit(actions) -> Transmit:
    sent = [a for a in actions if isinstance(a, Transmit)]
    assert len(sent) == 1, actions
    return sent[0]


def bound(client: Client, now: float = 0.0, lease: int = 100, extra=None) -> Message:
    discover = only_transmit(client.handle(Started(now))).message
    request = only_transmit(client.handle(PacketReceived(now, reply(discover, MT.OFFER)))).message
    actions = client.handle(PacketReceived(now, reply(request, MT.ACK, lease=lease, extra=extra)))
    assert isinstance(actions[0], LeaseBound)
    return request


Server = Callable[[float, Message], list[bytes]]


def scripted(**answers: MT) -> Server:
    """A server that answers each message kind (by name) as told, as SERVER, at once."""

    def answer(now: float, msg: Message) -> list[bytes]:
        kind = answers.get(msg.message_type.name) if msg.message_type else None
        return [] if kind is None else [reply(msg, kind)]

    return answer


def run_against(
    c: Client, server: Server, until: float
) -> tuple[list[tuple[float, Transmit]], list]:
    """The client's whole life against ``server`` in virtual time, to ``until``: what it sent
    (with when) and every action."""
    now, sent, log = 0.0, [], []
    actions = c.handle(Started(now))
    while True:
        log += actions
        replies = []
        for a in actions:
            if isinstance(a, Transmit):
                sent.append((now, a))
                replies += server(now, a.message)
        actions = [b for r in replies for b in c.handle(PacketReceived(now, r))]
        if actions:
            continue
        if c.next_deadline is None or c.next_deadline > until:
            return sent, log
        now = c.next_deadline
        actions = c.handle(TimerFired(now))


def test_dora_follows_table_5_of_rfc2131():
    c = make_client()
    d = only_transmit(c.handle(Started(0.0)))
    assert (d.dest, d.src) == (BROADCAST, ZERO)
    assert d.message.message_type is MT.DISCOVER and d.message.ciaddr == ZERO
    assert d.message.options[opt.CLIENT_ID] == CID
    assert d.message.options[opt.VENDOR_CLASS_ID] == b"lark"
    assert opt.SERVER_ID not in d.message.options and opt.REQUESTED_ADDRESS not in d.message.options
    r = only_transmit(c.handle(PacketReceived(0.01, reply(d.message, MT.OFFER))))
    assert r.message.message_type is MT.REQUEST and r.message.xid == d.message.xid
    assert r.message.options[opt.REQUESTED_ADDRESS] == ADDR.packed
    assert r.message.options[opt.SERVER_ID] == SERVER.packed
    assert r.message.ciaddr == ZERO and (r.dest, r.src) == (BROADCAST, ZERO)
    [bound_] = c.handle(PacketReceived(0.02, reply(r.message, MT.ACK)))
    assert isinstance(bound_, LeaseBound)
    lease = bound_.lease
    assert (lease.address, lease.prefixlen, lease.server_id) == (ADDR, 24, SERVER)
    assert (lease.t1_s, lease.t2_s, lease.lifetime_s) == (50.0, 87.5, 100.0)
    assert lease.routers == (SERVER,)
    assert c.state is State.BOUND and c.next_deadline == lease.renew_at == 0.01 + 50


def test_renewing_unicasts_from_the_lease_and_a_reply_renews():
    c = make_client()
    bound(c)
    t1 = c.next_deadline
    assert c.handle(TimerFired(t1 - 1)) == []  # early wake-ups do nothing
    renew = only_transmit(c.handle(TimerFired(t1)))
    m = renew.message
    assert c.state is State.RENEWING and (renew.dest, renew.src) == (SERVER, ADDR)
    assert m.ciaddr == ADDR and opt.REQUESTED_ADDRESS not in m.options
    assert opt.SERVER_ID not in m.options
    [renewed] = c.handle(PacketReceived(t1 + 0.1, reply(m, MT.ACK)))
    assert isinstance(renewed, LeaseRenewed) and renewed.lease.start == t1
    assert c.state is State.BOUND and c.next_deadline == t1 + 50


def test_renew_retries_at_half_the_time_left_then_rebinds_to_another_server():
    c = make_client()
    bound(c)
    lease = c.lease
    first = only_transmit(c.handle(TimerFired(lease.renew_at)))
    retry_at = c.next_deadline
    assert retry_at == pytest.approx(lease.renew_at + (lease.rebind_at - lease.renew_at) / 2)
    again = only_transmit(c.handle(TimerFired(retry_at)))
    assert again.message.xid == first.message.xid and again.dest == SERVER
    while c.state is State.RENEWING:
        rebind = only_transmit(c.handle(TimerFired(c.next_deadline)))
    assert c.state is State.REBINDING and (rebind.dest, rebind.src) == (BROADCAST, ADDR)
    assert rebind.message.ciaddr == ADDR
    [renewed] = c.handle(
        PacketReceived(lease.rebind_at + 1, reply(rebind.message, MT.ACK, server=OTHER))
    )
    assert isinstance(renewed, LeaseRenewed) and renewed.lease.server_id == OTHER


def test_with_no_server_the_lease_expires_and_discovery_starts_over():
    """At expiry, not before: the lease is lost and a new acquisition begins, a DISCOVER
    retransmitted on RFC 2131's doubling (2 s, 4 s, ... each +-1 s, the same xid) until
    the acquisition's own timeout, counted from the expiry."""
    c = make_client()
    bound(c)
    lease = c.lease
    assert lease is not None
    actions, now = [], 0.0
    while not any(isinstance(a, LeaseLost) for a in actions):
        assert c.next_deadline is not None
        now = c.next_deadline
        actions = c.handle(TimerFired(now))
    lost, discover = actions
    assert lost == LeaseLost(lease, "expired") and now == lease.expires_at
    assert discover.message.message_type is MT.DISCOVER and c.lease is None
    assert c.state is State.SELECTING
    sent, delay = [now], c.config.retransmit_initial_s
    while True:
        at = c.next_deadline
        assert at is not None
        actions = c.handle(TimerFired(at))
        if actions and isinstance(actions[0], GaveUp):
            break
        assert sent[-1] + delay - 1 <= at <= sent[-1] + delay + 1
        [again] = actions
        assert again.message.message_type is MT.DISCOVER
        assert again.message.xid == discover.message.xid
        sent.append(at)
        delay *= 2
    assert at == lease.expires_at + c.config.timeout_s and len(sent) >= 4


def test_nak_from_the_chosen_server_while_renewing_loses_the_lease():
    c = make_client()
    bound(c)
    renew = only_transmit(c.handle(TimerFired(c.next_deadline))).message
    assert c.handle(PacketReceived(51, reply(renew, MT.NAK, server=OTHER))) == []
    assert c.stats.dropped_why == {"a NAK from a server not asked": 1}
    assert c.state is State.RENEWING
    [lost] = c.handle(PacketReceived(51, reply(renew, MT.NAK)))
    assert lost.reason == "nak" and c.lease is None and c.state is State.INIT
    assert 51 + RESTART_FIRST_S <= c.next_deadline <= 51 + RESTART_FIRST_S * 1.25
    [discover] = c.handle(TimerFired(c.next_deadline))
    assert discover.message.message_type is MT.DISCOVER


def test_nak_while_requesting_from_another_server_is_ignored():
    c = make_client()
    d = only_transmit(c.handle(Started(0))).message
    r = only_transmit(c.handle(PacketReceived(0, reply(d, MT.OFFER)))).message
    assert c.handle(PacketReceived(0, reply(r, MT.NAK, server=OTHER))) == []
    assert c.state is State.REQUESTING
    assert c.handle(PacketReceived(0, reply(r, MT.NAK))) == []  # the chosen one: start over
    assert c.state is State.INIT and c.next_deadline >= RESTART_FIRST_S


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: {"xid": m.xid ^ 1},
        lambda m: {"chaddr": b"\x02\0\0\0\0\1"},
        lambda m: {"options": {**m.options, opt.CLIENT_ID: b"\xffsomeone-else"}},
    ],
)
def test_packets_for_another_xid_chaddr_or_client_id_are_dropped(mutate):
    c = make_client()
    d = only_transmit(c.handle(Started(0))).message
    offer = Message(
        op=BOOTREPLY,
        xid=d.xid,
        chaddr=MAC,
        yiaddr=ADDR,
        options={53: b"\x02", 54: SERVER.packed, 61: CID},
    )
    fields = {
        "op": BOOTREPLY,
        "xid": offer.xid,
        "chaddr": offer.chaddr,
        "yiaddr": ADDR,
        "options": offer.options,
    }
    fields.update(mutate(offer))
    assert c.handle(PacketReceived(0, encode(Message(**fields)))) == []
    assert c.stats.dropped == 1 and c.state is State.SELECTING


def test_discover_backs_off_exponentially_and_gives_up_at_the_timeout():
    c = make_client(timeout_s=40)
    c.handle(Started(0))
    times = [0.0]
    while True:
        actions = c.handle(TimerFired(c.next_deadline))
        if isinstance(actions[0], GaveUp):
            break
        times.append(actions[0].message.secs)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == sorted(gaps) and gaps[0] >= 1
    assert c.state is State.STOPPED and c.handle(TimerFired(1e9)) == []


def test_a_server_that_naks_every_request_backs_off_and_gives_up_naming_it():
    """The storm of the issue: a NAK led straight to a DISCOVER, ~3,000 packets a second."""
    c = make_client(timeout_s=30, retransmit_initial_s=1.0)
    sent, log = run_against(c, scripted(DISCOVER=MT.OFFER, REQUEST=MT.NAK), until=1e9)
    assert len(sent) <= 16, [round(t, 2) for t, _ in sent]  # was about 90,000
    assert c.state is State.STOPPED
    [give_up] = [a for a in log if isinstance(a, GaveUp)]
    assert give_up.reason == f"no lease after 30 s: {SERVER} NAKed"


def test_init_reboot_asks_for_the_remembered_address_without_server_id():
    old = make_client()
    bound(old)
    c = Client(old.config, rng=random.Random(2), remembered=old.lease)
    r = only_transmit(c.handle(Started(10)))
    assert c.state is State.REBOOTING and r.message.message_type is MT.REQUEST
    assert r.message.options[opt.REQUESTED_ADDRESS] == ADDR.packed
    assert opt.SERVER_ID not in r.message.options and r.message.ciaddr == ZERO
    [b] = c.handle(PacketReceived(10, reply(r.message, MT.ACK, server=OTHER)))
    assert isinstance(b, LeaseBound) and b.lease.server_id == OTHER


def test_release_goes_unicast_from_the_leased_address():
    c = make_client()
    bound(c)
    send, lost = c.handle(ReleaseRequested(5))
    m = send.message
    assert (send.dest, send.src) == (SERVER, ADDR) and m.message_type is MT.RELEASE
    assert m.ciaddr == ADDR and m.options[opt.SERVER_ID] == SERVER.packed
    assert opt.REQUESTED_ADDRESS not in m.options and lost.reason == "released"
    assert c.state is State.STOPPED and c.next_deadline is None
    assert c.handle(TimerFired(1e9)) == []


def test_an_answered_probe_declines_and_waits_ten_seconds_before_discovering_again():
    c = make_client(probe=arp.ProbeConfig(initial_wait_s=0, count=2, interval_s=(1, 1)))
    discover = only_transmit(c.handle(Started(0))).message
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    [probe] = c.handle(PacketReceived(0.1, reply(request, MT.ACK)))
    assert c.state is State.PROBING and c.lease is None  # not ours until probed
    assert probe == SendArp(arp.build(arp.REQUEST, MAC, ZERO, ADDR), ADDR)
    holder = bytes.fromhex("020000000099")
    answer = arp.build(arp.REPLY, holder, ADDR, ZERO)
    send, in_use = c.handle(ArpReceived(0.5, answer))
    assert send.message.message_type is MT.DECLINE and send.dest == BROADCAST
    assert send.message.options[opt.REQUESTED_ADDRESS] == ADDR.packed
    assert send.message.options[opt.SERVER_ID] == SERVER.packed
    assert send.message.ciaddr == ZERO and in_use == AddressInUse(ADDR, SERVER, holder)
    assert c.state is State.INIT and c.next_deadline >= 10.5 and c.remembered is None
    [discover] = c.handle(TimerFired(c.next_deadline))
    assert discover.message.message_type is MT.DISCOVER
    with pytest.raises(LocalProtocolError, match="ConflictDetected while SELECTING"):
        c.handle(ConflictDetected(12))


def test_absurd_lease_times_are_dropped_and_inconsistent_t1_t2_replaced():
    c = make_client()
    d = only_transmit(c.handle(Started(0))).message
    r = only_transmit(c.handle(PacketReceived(0, reply(d, MT.OFFER)))).message
    assert c.handle(PacketReceived(0, reply(r, MT.ACK, lease=0))) == []
    ack = reply(r, MT.ACK, extra={58: struct.pack("!I", 90), 59: struct.pack("!I", 80)})
    [b] = c.handle(PacketReceived(0, ack))
    assert (b.lease.t1_s, b.lease.t2_s) == (50.0, 80.0)  # T1 back to half the lease


def test_classless_routes_replace_the_router_option():
    routes = ((ipaddress.IPv4Network("0.0.0.0/0"), OTHER),)
    c = make_client()
    bound(c, extra={121: opt.encode_classless_routes(routes)})
    assert c.lease.routes == routes and c.lease.routers == ()


def test_infinite_lease_never_expires():
    c = make_client()
    bound(c, lease=0xFFFFFFFF)
    assert c.lease.expires_at == float("inf") and c.next_deadline == float("inf")


def test_started_twice_is_local_misuse():
    c = make_client()
    c.handle(Started(0))
    with pytest.raises(LocalProtocolError):
        c.handle(Started(1))


# -- each guard pinned: a test that fails when the guard goes (issue 16) --------------


def test_init_reboot_only_with_a_remembered_lease_that_has_not_expired():
    old = make_client()
    bound(old, lease=100)
    c = Client(old.config, rng=random.Random(2), remembered=old.lease)
    sent = only_transmit(c.handle(Started(old.lease.expires_at)))  # expired at this instant
    assert c.state is State.SELECTING and sent.message.message_type is MT.DISCOVER


@pytest.mark.parametrize("offered", ["0.0.0.0", "224.0.0.1", "255.255.255.255"])
def test_an_offer_of_no_usable_address_is_dropped(offered):
    c = make_client()
    discover = only_transmit(c.handle(Started(0))).message
    assert c.handle(PacketReceived(0.1, reply(discover, MT.OFFER, yiaddr=IP(offered)))) == []
    assert c.state is State.SELECTING and c.stats.dropped == 1


def test_an_ack_from_a_server_other_than_the_chosen_one_is_dropped():
    c = make_client()
    discover = only_transmit(c.handle(Started(0))).message
    request = only_transmit(c.handle(PacketReceived(0.1, reply(discover, MT.OFFER)))).message
    assert c.handle(PacketReceived(0.2, reply(request, MT.ACK, server=OTHER))) == []
    assert c.state is State.REQUESTING and c.lease is None


def test_requesting_without_an_ack_and_no_other_offer_starts_over():
    c = make_client(timeout_s=1000)
    discover = only_transmit(c.handle(Started(0))).message
    first = only_transmit(c.handle(PacketReceived(0.1, reply(discover, MT.OFFER))))
    while c.state is State.REQUESTING:
        actions = c.handle(TimerFired(c.next_deadline))
        if actions:
            again = only_transmit(actions).message
            assert again == dataclasses.replace(first.message, secs=again.secs)
    # the REQUEST is sent REQUESTING_ATTEMPTS times in all, then the client waits and starts over
    assert c.stats.sent == 1 + REQUESTING_ATTEMPTS and c.state is State.INIT
    [again] = c.handle(TimerFired(c.next_deadline))
    assert again.message.message_type is MT.DISCOVER and again.message.xid != discover.xid


def test_renew_retries_stop_at_t2_and_rebind_retries_at_expiry():
    c = make_client()
    bound(c, lease=1000)
    lease = c.lease
    assert lease is not None
    c.handle(TimerFired(lease.renew_at))
    while c.state is State.RENEWING:
        assert c.next_deadline is not None and c.next_deadline <= lease.rebind_at
        c.handle(TimerFired(c.next_deadline))
    assert c.state is State.REBINDING
    while c.state is State.REBINDING:
        assert c.next_deadline is not None and c.next_deadline <= lease.expires_at
        c.handle(TimerFired(c.next_deadline))
    assert c.lease is None  # expired: given up and started over


def test_a_renewing_client_accepts_its_address_only():
    c = make_client()
    bound(c)
    renew = only_transmit(c.handle(TimerFired(c.next_deadline))).message
    other = IP("10.77.0.51")
    assert c.handle(PacketReceived(51, reply(renew, MT.ACK, yiaddr=other))) == []
    assert c.state is State.RENEWING and c.lease is not None and c.lease.address == ADDR


def test_text_replaces_del_and_control_characters():
    assert opt.text(b"a\x7fb\x1bc\x80d") == "a?b?c?d"
    assert opt.text(b" ~") == " ~"  # the printable ends stay


# -- offers kept, black holes passed by, backoff (issue 16) -------------------------------

BLACK_HOLE = IP("10.77.0.9")
ELSEWHERE = IP("10.77.0.90")


def selecting(c: Client, now: float = 0.0) -> Message:
    return only_transmit(c.handle(Started(now))).message


def requested_server(t: Transmit) -> IP:
    assert t.message.message_type is MT.REQUEST
    return IP(t.message.options[opt.SERVER_ID])


def test_a_black_hole_offer_first_costs_two_quick_requests_then_the_next_offer_is_taken():
    c = make_client()
    discover = selecting(c)
    hole = only_transmit(
        c.handle(
            PacketReceived(0.01, reply(discover, MT.OFFER, server=BLACK_HOLE, yiaddr=ELSEWHERE))
        )
    )
    assert requested_server(hole) == BLACK_HOLE  # the first offer, at once
    assert c.handle(PacketReceived(0.3, reply(discover, MT.OFFER))) == []  # kept for later
    assert c.next_deadline == pytest.approx(0.01 + QUICK_RETRY_S)
    again = only_transmit(c.handle(TimerFired(c.next_deadline)))
    assert requested_server(again) == BLACK_HOLE
    assert c.next_deadline == pytest.approx(0.01 + 2 * QUICK_RETRY_S)
    real = only_transmit(c.handle(TimerFired(c.next_deadline)))
    assert requested_server(real) == SERVER and real.message.xid == discover.xid
    assert real.message.options[opt.REQUESTED_ADDRESS] == ADDR.packed
    # an ACK from the black hole for the site's address is nobody's
    assert c.handle(PacketReceived(1.1, reply(real.message, MT.ACK, server=BLACK_HOLE))) == []
    [bound_] = c.handle(PacketReceived(1.1, reply(real.message, MT.ACK)))
    assert isinstance(bound_, LeaseBound) and bound_.lease.server_id == SERVER


def test_a_lone_offer_gets_the_quick_retry_then_rfc_retransmissions_and_a_late_offer_is_used():
    c = make_client(retransmit_initial_s=4.0)
    discover = selecting(c)
    c.handle(PacketReceived(0, reply(discover, MT.OFFER, server=BLACK_HOLE, yiaddr=ELSEWHERE)))
    c.handle(TimerFired(QUICK_RETRY_S))
    assert c.next_deadline >= QUICK_RETRY_S + 4  # no other offer: the RFC's pace
    assert c.handle(PacketReceived(2.0, reply(discover, MT.OFFER))) == []
    assert c.next_deadline == pytest.approx(2.0)  # a fall-back now: switch as soon as due
    assert requested_server(only_transmit(c.handle(TimerFired(2.0)))) == SERVER


def test_offers_are_kept_once_per_server_and_at_most_max_offers():
    c = make_client()
    discover = selecting(c)
    c.handle(PacketReceived(0, reply(discover, MT.OFFER, server=BLACK_HOLE, yiaddr=ELSEWHERE)))
    servers = [IP(f"10.77.0.{20 + i}") for i in range(MAX_OFFERS + 2)]
    for server in [*servers, servers[0], BLACK_HOLE]:
        c.handle(PacketReceived(0.1, reply(discover, MT.OFFER, server=server)))
    tried = []
    while c.state is State.REQUESTING:
        for a in c.handle(TimerFired(c.next_deadline)):
            if isinstance(a, Transmit):
                tried.append(requested_server(a))
    assert list(dict.fromkeys(tried)) == [BLACK_HOLE, *servers[: MAX_OFFERS - 1]]
    assert c.stats.dropped_why["an offer already held"] == 5


def test_a_nak_from_the_chosen_server_requests_the_next_offer_at_once():
    c = make_client()
    discover = selecting(c)
    first = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER, server=OTHER))))
    c.handle(PacketReceived(0, reply(discover, MT.OFFER)))
    nexts = c.handle(PacketReceived(0.1, reply(first.message, MT.NAK, server=OTHER)))
    assert requested_server(only_transmit(nexts)) == SERVER


def _switched_from_the_black_hole(c: Client) -> tuple[Message, Transmit]:
    discover = selecting(c)
    c.handle(PacketReceived(0, reply(discover, MT.OFFER, server=BLACK_HOLE, yiaddr=ELSEWHERE)))
    c.handle(PacketReceived(0.2, reply(discover, MT.OFFER)))
    c.handle(TimerFired(QUICK_RETRY_S))  # the black hole's second REQUEST
    real = only_transmit(c.handle(TimerFired(2 * QUICK_RETRY_S)))
    assert requested_server(real) == SERVER
    return discover, real


def test_naks_for_requests_that_named_another_server_are_put_down_to_those():
    """An authoritative server (dnsmasq) NAKs each broadcast REQUEST naming another server,
    late: two REQUESTs named the black hole, so two NAKs from the site are excused."""
    c = make_client()
    _, real = _switched_from_the_black_hole(c)
    for t in (1.1, 1.2):
        assert c.handle(PacketReceived(t, reply(real.message, MT.NAK))) == []
    assert c.stats.dropped_why["a NAK for a REQUEST that named another server"] == 2
    [bound_] = c.handle(PacketReceived(1.3, reply(real.message, MT.ACK)))
    assert isinstance(bound_, LeaseBound)
    c2 = make_client()
    _, real2 = _switched_from_the_black_hole(c2)
    for t in (1.1, 1.2):
        c2.handle(PacketReceived(t, reply(real2.message, MT.NAK)))
    assert c2.handle(PacketReceived(1.3, reply(real2.message, MT.NAK))) == []  # the third: real
    assert (
        c2.state is State.INIT
        and c2.stats.dropped_why["a NAK for a REQUEST that named another server"] == 2
    )


def test_a_late_ack_for_an_offer_requested_earlier_in_the_transaction_is_taken():
    c = make_client()
    _, real = _switched_from_the_black_hole(c)
    wrong = reply(real.message, MT.ACK, server=BLACK_HOLE)  # its server, not its address
    assert c.handle(PacketReceived(1.1, wrong)) == []
    late = reply(real.message, MT.ACK, server=BLACK_HOLE, yiaddr=ELSEWHERE)
    [bound_] = c.handle(PacketReceived(1.2, late))
    assert isinstance(bound_, LeaseBound) and bound_.lease.address == ELSEWHERE
    assert bound_.lease.start == 0.0  # counted from the transaction's start: never too long


def test_the_give_up_names_what_was_heard_in_one_line():
    def server(now: float, msg: Message) -> list[bytes]:
        if msg.message_type is MT.DISCOVER:
            hole = reply(msg, MT.OFFER, server=BLACK_HOLE, yiaddr=ELSEWHERE)
            return [hole, reply(msg, MT.OFFER, server=OTHER), reply(msg, MT.OFFER, lease=0)]
        if requested_server(Transmit(msg, BROADCAST, ZERO)) == OTHER:
            return [reply(msg, MT.NAK, server=OTHER)]
        return []

    c = make_client(timeout_s=10)
    _, log = run_against(c, server, until=1e9)
    [give_up] = [a for a in log if isinstance(a, GaveUp)]
    assert give_up.reason == (
        f"no lease after 10 s: offers from {BLACK_HOLE} were never acknowledged; "
        f"{OTHER} NAKed; replies dropped (a lease time of 0: 2)"
    )
    silent = make_client(timeout_s=5)
    run_against(silent, scripted(), until=1e9)
    assert silent.state is State.STOPPED


@pytest.mark.slow
def test_whatever_the_network_answers_the_client_sends_a_few_packets_a_second():
    rng = random.Random(5)
    servers = [IP(f"10.77.0.{i}") for i in range(1, 9)]

    def hostile(now: float, msg: Message) -> list[bytes]:
        kinds = [MT.OFFER, MT.ACK, MT.NAK]
        return [
            reply(msg, rng.choice(kinds), server=rng.choice(servers), lease=rng.choice([1, 2, 9]))
            for _ in range(rng.randrange(4))
        ]

    for seed in range(20):
        c = make_client(timeout_s=600, retransmit_initial_s=1.0)
        c.rng = random.Random(seed)
        sent, _ = run_against(c, hostile, until=300)
        times = [t for t, _ in sent]
        busiest = max(sum(1 for u in times if t <= u < t + 1) for t in times)
        assert busiest <= MAX_OFFERS + 2, (seed, busiest)
        assert len(times) / 300 <= 3, (seed, len(times))


# -- strict acceptance: each rule of lease.lease_from_reply and the client's own ---------


def _no(code):
    return lambda o: {k: v for k, v in o.items() if k != code}


RULES = {
    "no server identifier": (_no(opt.SERVER_ID), {}),
    "no lease time": (_no(opt.LEASE_TIME), {}),
    "a lease time of 0": (lambda o: {**o, opt.LEASE_TIME: bytes(4)}, {}),
    "a non-contiguous subnet mask": (lambda o: {**o, opt.SUBNET_MASK: bytes([255, 0, 255, 0])}, {}),
    "more than one message type": (lambda o: {**o, opt.MESSAGE_TYPE: o[53] + o[53]}, {}),
    **{
        f"an address no host can have ({a})": (lambda o: o, {"yiaddr": IP(a)})
        for a in (
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        )
    },
}


def _raw_reply(request: Message, kind: MT, change, fields) -> bytes:
    msg = decode(reply(request, kind))
    return encode(dataclasses.replace(msg, options=change(dict(msg.options)), **fields))


@pytest.mark.parametrize("rule", list(RULES))
def test_an_offer_breaking_a_rule_is_dropped_and_counted_by_rule(rule):
    change, fields = RULES[rule]
    c = make_client()
    discover = selecting(c)
    assert c.handle(PacketReceived(0, _raw_reply(discover, MT.OFFER, change, fields))) == []
    assert c.state is State.SELECTING
    assert c.stats.dropped_why == {rule.split(" (")[0]: 1}


@pytest.mark.parametrize("rule", list(RULES))
def test_an_ack_breaking_a_rule_is_dropped_and_counted_by_rule(rule):
    change, fields = RULES[rule]
    c = make_client()
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    assert c.handle(PacketReceived(0, _raw_reply(request, MT.ACK, change, fields))) == []
    assert c.state is State.REQUESTING and c.lease is None
    # an ACK must carry the offered address before any other rule is read
    expected = "an ACK for another address" if fields else rule
    assert c.stats.dropped_why == {expected: 1}


@pytest.mark.parametrize(
    "tail", [bytes([33, 0, 0, 0, 0, 0, 1, 2, 3, 4]), bytes([24, 10, 1]), bytes([7, 11, 1, 2, 3, 4])]
)
def test_a_reply_with_broken_classless_routes_is_dropped_whole(tail):
    good = opt.encode_classless_routes(((ipaddress.IPv4Network("10.9.0.0/16"), OTHER),))
    c = make_client()
    discover = selecting(c)
    broken = reply(discover, MT.OFFER, extra={opt.CLASSLESS_ROUTES: good + tail})
    assert c.handle(PacketReceived(0, broken)) == [] and c.state is State.SELECTING
    assert c.stats.dropped_why == {"broken classless routes": 1}  # never half applied
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    ack = reply(request, MT.ACK, extra={opt.CLASSLESS_ROUTES: good + tail})
    assert c.handle(PacketReceived(0, ack)) == [] and c.lease is None


def test_a_hostname_or_domain_with_control_characters_never_comes_out_raw():
    c = make_client()
    bound(c, extra={opt.HOSTNAME: b"job\n[x]\x1b\x7f", opt.DOMAIN_NAME: b"a\rb\0tail"})
    assert (c.lease.hostname, c.lease.domain) == ("job?[x]??", "a?b")


# -- the probe is part of the machine (RFC 5227) ----------------------------------------

PROBE = arp.ProbeConfig(initial_wait_s=0.0, count=3, interval_s=(1.0, 1.0), final_wait_s=2.0)


def probing(**kw) -> tuple[Client, Message]:
    c = make_client(probe=PROBE, **kw)
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    first = c.handle(PacketReceived(0, reply(request, MT.ACK)))
    assert first == [SendArp(arp.build(arp.REQUEST, MAC, ZERO, ADDR), ADDR)]
    return c, request


def test_a_quiet_probe_sends_its_probes_on_time_then_announces_and_binds():
    c, _ = probing()
    probes = [(0.0, "probe")]
    while c.state is State.PROBING:
        now = c.next_deadline
        for a in c.handle(TimerFired(now)):
            if isinstance(a, SendArp):
                probes.append((now, "probe" if a.probing else "announce"))
            else:
                bound_ = a
    assert probes == [(0.0, "probe"), (1.0, "probe"), (2.0, "probe"), (4.0, "announce")]
    assert isinstance(bound_, LeaseBound) and c.lease == bound_.lease and c.state is State.BOUND


def test_arp_heard_only_matters_while_probing_and_only_from_someone_else():
    c, _ = probing()
    ours = arp.build(arp.REQUEST, MAC, ZERO, ADDR)
    unrelated = arp.build(arp.REPLY, bytes.fromhex("020000000077"), IP("10.77.0.77"), ZERO)
    assert c.handle(ArpReceived(0.1, ours)) == [] and c.handle(ArpReceived(0.1, unrelated)) == []
    assert c.state is State.PROBING
    while c.state is State.PROBING:
        c.handle(TimerFired(c.next_deadline))
    taken = arp.build(arp.REPLY, bytes.fromhex("020000000077"), ADDR, ZERO)
    assert c.handle(ArpReceived(10, taken)) == [] and c.state is State.BOUND


def test_a_conflict_the_driver_knows_of_declines_without_a_holder():
    c, _ = probing()
    send, in_use = c.handle(ConflictDetected(0.5))
    assert send.message.message_type is MT.DECLINE and in_use.holder == b""


def test_release_while_probing_releases_without_reporting_a_loss():
    c, _ = probing()
    [send] = c.handle(ReleaseRequested(0.5))
    assert send.message.message_type is MT.RELEASE and (send.dest, send.src) == (SERVER, ADDR)
    assert c.state is State.STOPPED


def test_an_illegal_local_input_names_the_input_and_the_state():
    c = make_client()
    bound(c)
    with pytest.raises(LocalProtocolError, match="ConflictDetected while BOUND"):
        c.handle(ConflictDetected(1))


def test_everything_but_the_trio_driver_imports_without_trio():
    """Job-side test programs run the system python -I with only the codec on the path."""
    code = (
        "import sys; sys.modules['trio'] = None\n"
        "import dhcp, dhcp.arp, dhcp.build, dhcp.client, dhcp.frame, dhcp.lease\n"
    )
    root = str(Path(__file__).resolve().parents[3])
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {root!r})\n" + code],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# -- what goes on the wire, exactly (mutation testing: bench/dhcp_mutation.py) -----------

HOLDER = bytes.fromhex("020000000099")
SERVER_MAC = bytes.fromhex("02000000aa01")


class _Spread(random.Random):
    """An rng whose every spread is at one end: uniform(a, b) is a (low) or b (high)."""

    def __init__(self, high: bool) -> None:
        super().__init__(1)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def _declined(holder: bytes | None, seed: int = 1, **kw) -> tuple[Client, Message, list]:
    c = make_client(probe=arp.ProbeConfig(initial_wait_s=0, count=2, interval_s=(1, 1)), **kw)
    c.rng = random.Random(seed)
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    c.handle(PacketReceived(0.1, reply(request, MT.ACK)))
    sent_before = c.stats.sent
    if holder is None:
        actions = c.handle(ConflictDetected(0.5))
    else:
        actions = c.handle(ArpReceived(0.5, arp.build(arp.REPLY, holder, ADDR, ZERO)))
    assert c.stats.sent == sent_before + 1  # the DECLINE is counted as sent
    return c, request, actions


def test_a_decline_carries_exactly_table_5s_fields_and_goes_broadcast_from_no_address():
    _, request, actions = _declined(HOLDER)
    send, in_use = actions
    m = send.message
    assert (send.dest, send.src, send.dst_mac) == (BROADCAST, ZERO, b"")
    assert m.op == 1 and m.chaddr == MAC and m.ciaddr == ZERO and m.yiaddr == ZERO
    assert m.options == {
        opt.MESSAGE_TYPE: bytes([MT.DECLINE]),
        opt.CLIENT_ID: CID,
        opt.REQUESTED_ADDRESS: ADDR.packed,
        opt.SERVER_ID: SERVER.packed,
    }
    assert m.xid != request.xid  # a DECLINE begins a transaction of its own
    assert in_use == AddressInUse(ADDR, SERVER, HOLDER)
    assert decode(encode(m)) == m  # and it goes on the wire as it is


def test_the_wait_after_a_decline_is_the_configured_one_at_least():
    c, _, _ = _declined(HOLDER, decline_wait_s=30)
    assert c.state is State.INIT and 30.5 <= c.next_deadline <= 30.5 + RESTART_FIRST_S * 1.25


@pytest.mark.parametrize(("holder", "who"), [(HOLDER, "02:00:00:00:00:99"), (None, "this host")])
def test_a_give_up_after_a_decline_names_the_address_its_server_and_its_holder(holder, who):
    c, _, _ = _declined(holder, timeout_s=5)
    [give_up] = c.handle(TimerFired(c.next_deadline))
    assert c.next_deadline is None and c.state is State.STOPPED
    assert give_up == GaveUp(f"no lease after 5 s: {SERVER} offered {ADDR}, in use by {who}")


def test_a_release_carries_exactly_table_5s_fields_to_the_servers_mac():
    c = make_client()
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    [b] = c.handle(PacketReceived(0.1, reply(request, MT.ACK), SERVER_MAC))
    assert b.lease.server_mac == SERVER_MAC
    sent_before = c.stats.sent
    send, lost = c.handle(ReleaseRequested(5))
    m = send.message
    assert (send.dest, send.src, send.dst_mac) == (SERVER, ADDR, SERVER_MAC)
    assert m.op == 1 and m.chaddr == MAC and m.ciaddr == ADDR and m.yiaddr == ZERO
    assert m.options == {
        opt.MESSAGE_TYPE: bytes([MT.RELEASE]),
        opt.CLIENT_ID: CID,
        opt.SERVER_ID: SERVER.packed,
    }
    assert m.xid != request.xid and decode(encode(m)) == m
    assert lost == LeaseLost(b.lease, "released") and c.stats.sent == sent_before + 1


def test_a_release_while_probing_goes_to_the_servers_mac_too():
    c = make_client(probe=PROBE)
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    c.handle(PacketReceived(0, reply(request, MT.ACK), SERVER_MAC))
    [send] = c.handle(ReleaseRequested(0.5))
    assert send.dst_mac == SERVER_MAC and send.message.ciaddr == ADDR
    assert send.message.options[opt.CLIENT_ID] == CID and send.message.chaddr == MAC


@pytest.mark.parametrize("state", ["INIT", "SELECTING", "REQUESTING", "REBOOTING"])
def test_a_release_with_no_lease_sends_nothing_and_stops(state):
    old = make_client()
    bound(old)
    c = make_client() if state != "REBOOTING" else Client(old.config, remembered=old.lease)
    if state != "INIT":
        first = only_transmit(c.handle(Started(1))).message
        if state == "REQUESTING":
            c.handle(PacketReceived(1, reply(first, MT.OFFER)))
    assert c.state.value == state
    sent = c.stats.sent
    assert c.handle(ReleaseRequested(2)) == [] and c.stats.sent == sent
    assert c.state is State.STOPPED and c.next_deadline is None


def test_retransmissions_carry_the_seconds_since_the_acquisition_began():
    """RFC 2131 section 4.4.1: ``secs`` counts from the start of the acquisition, in every
    retransmission of the DISCOVER and of the REQUEST (same xid: the same transaction)."""
    c = make_client(timeout_s=1000)
    discover = selecting(c, now=100.0)
    assert discover.secs == 0
    at = c.next_deadline
    again = only_transmit(c.handle(TimerFired(at))).message
    assert again.secs == int(at - 100.0) >= 1 and again.xid == discover.xid
    at = 100.0 + 7.9
    request = only_transmit(c.handle(PacketReceived(at, reply(discover, MT.OFFER)))).message
    assert request.secs == 7
    retry = only_transmit(c.handle(TimerFired(c.next_deadline))).message  # at 108.4
    assert retry.secs == 8 and retry.xid == discover.xid
    assert dataclasses.replace(retry, secs=7) == request  # nothing else changes


def test_secs_stops_at_its_16_bit_maximum():
    c = make_client()
    bound(c, lease=1_000_000)  # T1 at 500,000 s, T2 at 875,000 s
    first = only_transmit(c.handle(TimerFired(c.next_deadline))).message
    again = only_transmit(c.handle(TimerFired(c.next_deadline))).message  # 187,500 s later
    assert (first.secs, again.secs) == (0, 0xFFFF) and again.xid == first.xid


def test_a_renewal_retransmission_goes_where_the_first_went_with_its_own_secs():
    c = make_client()
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    c.handle(PacketReceived(0, reply(request, MT.ACK), SERVER_MAC))
    first = only_transmit(c.handle(TimerFired(c.next_deadline)))
    assert first.message.secs == 0 and first.message.xid != discover.xid
    assert (first.dest, first.src, first.dst_mac) == (SERVER, ADDR, SERVER_MAC)
    at = c.next_deadline
    again = only_transmit(c.handle(TimerFired(at)))
    assert (again.dest, again.src, again.dst_mac) == (SERVER, ADDR, SERVER_MAC)
    assert again.message.secs == int(at - 50) and again.message.xid == first.message.xid


@pytest.mark.parametrize(
    ("high", "gaps"),
    [
        (False, [0.5, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 63.0]),  # -1 s, but never under half
        (True, [2.0, 3.0, 5.0, 9.0, 17.0, 33.0, 65.0, 65.0]),  # +1 s, doubling up to 64 s
    ],
)
def test_discover_retransmissions_double_up_to_64_s_with_a_second_of_spread(high, gaps):
    """RFC 2131 section 4.1: doubling from the first delay up to 64 s, each randomised by
    -1..+1 s; this client's first delay is 1 s here, and no wait is under half its delay."""
    c = Client(
        Config(chaddr=MAC, client_id=CID, retransmit_initial_s=1.0, timeout_s=1e6, probe=None),
        rng=_Spread(high),
    )
    c.handle(Started(0))
    times = [0.0]
    for _ in gaps:
        times.append(c.next_deadline)
        only_transmit(c.handle(TimerFired(c.next_deadline)))
    assert [b - a for a, b in itertools.pairwise(times)] == gaps
    assert c.stats.sent == len(gaps) + 1


def test_a_client_with_a_long_timeout_keeps_discovering_every_64_s():
    """With no server for a day (a timeout of days): 2 ** attempt overflowed a float at the
    1,024th retransmission, about 18 hours in, and handle() raised OverflowError."""
    c = make_client(timeout_s=3 * 86400.0, retransmit_initial_s=1.0)
    c.handle(Started(0))
    for _ in range(1100):
        at = c.next_deadline
        last = only_transmit(c.handle(TimerFired(at))).message
    assert 63 <= c.next_deadline - at <= 65 and c.state is State.SELECTING
    assert at > 0xFFFF and last.secs == 0xFFFF  # secs stops at its 16-bit maximum


def test_the_give_up_line_names_each_server_once_in_order_and_counts_each_rule():
    def server(now: float, msg: Message) -> list[bytes]:
        if msg.message_type is MT.DISCOVER:
            return [
                reply(msg, MT.OFFER, server=BLACK_HOLE, yiaddr=ELSEWHERE),
                reply(msg, MT.OFFER, server=OTHER),
                reply(msg, MT.OFFER, lease=0),
                reply(msg, MT.OFFER, extra={opt.SUBNET_MASK: bytes([255, 0, 255, 0])}),
            ]
        return []

    c = make_client(timeout_s=40)
    _, log = run_against(c, server, until=1e9)
    [give_up] = [a for a in log if isinstance(a, GaveUp)]
    assert c._heard.unacknowledged.count(BLACK_HOLE) >= 2  # named once all the same
    assert give_up.reason.startswith(
        f"no lease after 40 s: offers from {BLACK_HOLE}, {OTHER} were never acknowledged; "
        "replies dropped (a lease time of 0: "
    )
    n = c.stats.dropped_why["a lease time of 0"]
    assert n >= 2 and give_up.reason.endswith(
        f"a lease time of 0: {n}, a non-contiguous subnet mask: {n})"
    )


def test_the_give_up_line_names_every_server_that_naked():
    discovers = itertools.count()

    def server(now: float, msg: Message) -> list[bytes]:
        if msg.message_type is MT.DISCOVER:  # SERVER, OTHER, SERVER, OTHER, ... offer
            return [reply(msg, MT.OFFER, server=(SERVER, OTHER)[next(discovers) % 2])]
        return [reply(msg, MT.NAK, server=IP(msg.options[opt.SERVER_ID]))]

    c = make_client(timeout_s=20)
    _, log = run_against(c, server, until=1e9)
    [give_up] = [a for a in log if isinstance(a, GaveUp)]
    assert next(discovers) >= 4  # each NAKed twice or more, named once
    assert give_up.reason == f"no lease after 20 s: {SERVER}, {OTHER} NAKed"


def test_started_again_while_waiting_to_start_over_is_local_misuse():
    c = make_client()
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    c.handle(PacketReceived(0, reply(request, MT.NAK)))
    assert c.state is State.INIT
    with pytest.raises(LocalProtocolError, match="Started while INIT"):
        c.handle(Started(1))


def test_init_reboot_sends_secs_0_broadcast_and_gives_up_after_the_timeout():
    old = make_client()
    bound(old)
    config = dataclasses.replace(old.config, timeout_s=30, retransmit_initial_s=1.0)
    c = Client(config, rng=random.Random(2), remembered=old.lease)
    r = only_transmit(c.handle(Started(10)))
    assert r.message.secs == 0 and (r.dest, r.src) == (BROADCAST, ZERO)
    kinds = []
    while c.state is not State.STOPPED:
        for a in c.handle(TimerFired(c.next_deadline)):
            kinds.append(a.message.message_type if isinstance(a, Transmit) else a)
    # four REQUESTs for the old address in all (section 3.2), then DISCOVERs to the end
    assert kinds[: REQUESTING_ATTEMPTS - 1] == [MT.REQUEST] * (REQUESTING_ATTEMPTS - 1)
    assert kinds[REQUESTING_ATTEMPTS - 1] is MT.DISCOVER
    assert kinds[-1] == GaveUp("no lease after 30 s: no server answered")
    assert c.stats.sent == len(kinds)  # every message, and the give-up came at 10 + 30 s


def test_a_lease_counts_from_the_first_request_not_its_retransmission():
    """RFC 2131 section 4.4.1: T1, T2 and expiry count from when the REQUEST was sent."""
    c = make_client()
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0.3, reply(discover, MT.OFFER)))).message
    c.handle(TimerFired(c.next_deadline))  # the REQUEST again, at 0.8
    [b] = c.handle(PacketReceived(0.9, reply(request, MT.ACK)))
    assert b.lease.start == 0.3 and c.next_deadline == 0.3 + 50


def test_an_ack_that_comes_when_its_lease_is_already_over_is_dropped():
    c = make_client()
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    assert c.handle(PacketReceived(10, reply(request, MT.ACK, lease=10))) == []
    assert c.stats.dropped_why == {"a lease over when it came": 1} and c.lease is None
    [b] = c.handle(PacketReceived(9.9, reply(request, MT.ACK, lease=10)))
    assert isinstance(b, LeaseBound)


def test_a_renewed_lease_is_the_one_remembered_for_the_next_start():
    c = make_client()
    bound(c)
    assert c.remembered == c.lease
    renew = only_transmit(c.handle(TimerFired(c.next_deadline))).message
    [renewed] = c.handle(PacketReceived(51, reply(renew, MT.ACK), SERVER_MAC))
    assert c.remembered == renewed.lease == c.lease and renewed.lease.server_mac == SERVER_MAC


def test_renewal_retries_halve_the_time_to_t2_down_to_the_minimum():
    """RFC 2131 section 4.4.5: wait half the time left to T2 (REBINDING: to expiry), but
    no less than the minimum (60 s in the RFC), and never past T2."""
    c = Client(Config(chaddr=MAC, client_id=CID, probe=None, renew_retry_min_s=60.0))
    c.rng = random.Random(1)
    bound(c, lease=1000)
    times = []
    while c.state in (State.BOUND, State.RENEWING):
        times.append(c.next_deadline)
        c.handle(TimerFired(c.next_deadline))
    assert times == [500.0, 687.5, 781.25, 841.25, 875.0]
    while c.state is State.REBINDING:
        times.append(c.next_deadline)
        c.handle(TimerFired(c.next_deadline))
    assert times[5:] == [937.5, 997.5, 1000.0]


def test_every_drop_is_counted_under_its_reason():
    c = make_client()
    discover = selecting(c)
    c.handle(PacketReceived(0, b"\x02garbage"))
    c.handle(PacketReceived(0, reply(discover, MT.ACK)))  # not an answer to a DISCOVER
    c.handle(PacketReceived(0, reply(discover, MT.NAK)))
    bad_lease = reply(discover, MT.OFFER, extra={opt.LEASE_TIME: b"\0\0\1"})  # 3 octets
    c.handle(PacketReceived(0, bad_lease))
    assert c.stats.dropped_why == {
        "malformed": 1,
        "ACK while SELECTING": 1,
        "NAK while SELECTING": 1,
        "a malformed option": 1,
    }
    assert c.stats.dropped == 4 and c.state is State.SELECTING
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    assert c.handle(PacketReceived(0, reply(request, MT.ACK, server=OTHER))) == []
    assert c.stats.dropped_why["an answer from a server not asked"] == 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: {"op": 1},
        lambda m: {"xid": m.xid ^ 1},
        lambda m: {"chaddr": b"\x02\0\0\0\0\1"},
        lambda m: {"options": {**m.options, opt.CLIENT_ID: b"\xffsomeone-else"}},
    ],
)
def test_a_good_offer_for_another_transaction_is_dropped_as_such(mutate):
    """One field off, the rest an offer this client would take: not ours."""
    c = make_client()
    good = decode(reply(selecting(c), MT.OFFER))
    assert c.handle(PacketReceived(0, encode(dataclasses.replace(good, **mutate(good))))) == []
    assert c.stats.dropped_why == {"another transaction": 1} and c.state is State.SELECTING


def test_first_sends_and_retransmissions_are_whole_broadcasts_from_no_address():
    c = make_client()
    d = c.handle(Started(0))
    assert d == [Transmit(d[0].message, BROADCAST, ZERO, b"")]
    [again] = c.handle(TimerFired(c.next_deadline))
    assert again == Transmit(again.message, BROADCAST, ZERO, b"")
    request = only_transmit(c.handle(PacketReceived(4, reply(d[0].message, MT.OFFER))))
    [retry] = c.handle(TimerFired(c.next_deadline))
    secs = retry.message.secs
    assert retry == Transmit(dataclasses.replace(request.message, secs=secs), BROADCAST, ZERO, b"")


def test_rebinding_broadcasts_to_every_mac():
    c = make_client()
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    c.handle(PacketReceived(0, reply(request, MT.ACK), SERVER_MAC))
    while c.state is not State.REBINDING:
        [sent] = c.handle(TimerFired(c.next_deadline))
    assert (sent.dest, sent.src, sent.dst_mac) == (BROADCAST, ADDR, b"")
    [again] = c.handle(TimerFired(c.next_deadline))
    assert (again.dest, again.src, again.dst_mac) == (BROADCAST, ADDR, b"")


def test_a_nak_while_renewing_reports_the_lease_lost_and_forgets_it():
    c = make_client()
    bound(c)
    lease = c.lease
    renew = only_transmit(c.handle(TimerFired(c.next_deadline))).message
    assert c.handle(PacketReceived(51, reply(renew, MT.NAK))) == [LeaseLost(lease, "nak")]
    assert c.remembered is None  # no INIT-REBOOT for an address refused


def test_without_announcement_the_probe_ends_in_the_lease_alone():
    c = make_client(probe=dataclasses.replace(PROBE, announce=False))
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    c.handle(PacketReceived(0, reply(request, MT.ACK)))
    actions = []
    while c.state is State.PROBING:
        actions = c.handle(TimerFired(c.next_deadline))
    assert [type(a) for a in actions] == [LeaseBound]


def test_the_first_probe_waits_for_its_random_delay():
    """RFC 5227 section 2.1.1: wait up to PROBE_WAIT before the first probe; the ACK
    itself sends nothing."""
    c = make_client(probe=dataclasses.replace(PROBE, initial_wait_s=1.0))
    discover = selecting(c)
    request = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER)))).message
    assert c.handle(PacketReceived(0, reply(request, MT.ACK))) == []
    assert c.state is State.PROBING and 0 < c.next_deadline <= 1.0
    [probe] = c.handle(TimerFired(c.next_deadline))
    assert probe == SendArp(arp.build(arp.REQUEST, MAC, ZERO, ADDR), ADDR)


@pytest.mark.parametrize("seed", range(8))
def test_decline_and_release_xids_fit_the_32_bit_field(seed):
    _, _, [send, _] = _declined(HOLDER, seed=seed)
    assert 0 <= send.message.xid < 2**32
    d = make_client()
    d.rng = random.Random(seed)
    bound(d)
    release, _ = d.handle(ReleaseRequested(5))
    assert 0 <= release.message.xid < 2**32


def test_an_ack_from_a_server_that_naked_this_exchange_is_not_taken_as_late():
    c = make_client()
    discover = selecting(c)
    first = only_transmit(c.handle(PacketReceived(0, reply(discover, MT.OFFER, server=OTHER))))
    c.handle(PacketReceived(0, reply(discover, MT.OFFER)))
    c.handle(PacketReceived(0.1, reply(first.message, MT.NAK, server=OTHER)))  # next offer
    assert c.handle(PacketReceived(0.2, reply(first.message, MT.ACK, server=OTHER))) == []
    assert c.state is State.REQUESTING and c.lease is None
