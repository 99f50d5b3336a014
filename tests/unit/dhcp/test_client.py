"""Timelines with explicit ``now`` against the sans-IO client, and a fake in-memory server."""

from __future__ import annotations

import ipaddress
import itertools
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp import options as opt
from dhcp.client import REQUESTING_ATTEMPTS, Client, Config, State
from dhcp.errors import LocalProtocolError
from dhcp.events import (
    BROADCAST,
    ConflictDetected,
    GaveUp,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from dhcp.message import BOOTREPLY, ZERO, Message, encode

MT = opt.MessageType
IP = ipaddress.IPv4Address
MAC = bytes.fromhex("02aabbccddee")
CID = opt.client_id(7, opt.duid_ll(MAC))
SERVER, OTHER = IP("10.77.0.1"), IP("10.77.0.2")
ADDR = IP("10.77.0.50")


def make_client(**kw) -> Client:
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
    c = make_client()
    bound(c)
    lease = c.lease
    actions = []
    while not any(isinstance(a, LeaseLost) for a in actions):
        actions = c.handle(TimerFired(c.next_deadline))
    lost, discover = actions
    assert lost == LeaseLost(lease, "expired") and c.next_deadline is not None
    assert discover.message.message_type is MT.DISCOVER and c.lease is None


def test_nak_from_the_chosen_server_while_renewing_loses_the_lease():
    c = make_client()
    bound(c)
    renew = only_transmit(c.handle(TimerFired(c.next_deadline))).message
    assert c.handle(PacketReceived(51, reply(renew, MT.NAK, server=OTHER))) == []
    assert c.stats.dropped == 1 and c.state is State.RENEWING
    lost, discover = c.handle(PacketReceived(51, reply(renew, MT.NAK)))
    assert lost.reason == "nak" and discover.message.message_type is MT.DISCOVER


def test_nak_while_requesting_from_another_server_is_ignored():
    c = make_client()
    d = only_transmit(c.handle(Started(0))).message
    r = only_transmit(c.handle(PacketReceived(0, reply(d, MT.OFFER)))).message
    assert c.handle(PacketReceived(0, reply(r, MT.NAK, server=OTHER))) == []
    [discover] = c.handle(PacketReceived(0, reply(r, MT.NAK)))
    assert discover.message.message_type is MT.DISCOVER and c.state is State.SELECTING


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


def test_a_server_that_naks_every_request_ends_in_a_clear_give_up():
    c = make_client(timeout_s=10)
    discover = only_transmit(c.handle(Started(0))).message
    now = 0.0
    for _ in range(100):
        request = only_transmit(c.handle(PacketReceived(now, reply(discover, MT.OFFER)))).message
        discover = only_transmit(c.handle(PacketReceived(now, reply(request, MT.NAK)))).message
        now += 1.5
        actions = c.handle(TimerFired(c.next_deadline)) if c.next_deadline <= now else []
        if actions and isinstance(actions[0], GaveUp):
            break
        if actions:
            discover = only_transmit(actions).message
    else:
        raise AssertionError("NAKed forever without giving up")
    assert actions[0].reason == (
        f"no lease after 10 s (SELECTING); the last request was refused (NAK) by {SERVER}"
    )


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


def test_conflict_declines_and_waits_before_discovering_again():
    c = make_client()
    bound(c)
    send, lost = c.handle(ConflictDetected(1))
    assert send.message.message_type is MT.DECLINE and send.dest == BROADCAST
    assert send.message.options[opt.REQUESTED_ADDRESS] == ADDR.packed
    assert send.message.ciaddr == ZERO and lost.reason == "declined"
    assert c.next_deadline == 11
    [discover] = c.handle(TimerFired(11))
    assert discover.message.message_type is MT.DISCOVER
    with pytest.raises(LocalProtocolError):
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


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=400), st.floats(0, 1e6)), max_size=20))
def test_fuzz_random_inputs_never_make_the_client_raise(events):
    c = make_client()
    c.handle(Started(0))
    for ev in events:
        if isinstance(ev, bytes):
            c.handle(PacketReceived(1, ev))
        else:
            c.handle(TimerFired(ev))


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


def test_requesting_without_an_ack_falls_back_to_discover():
    c = make_client(timeout_s=1000)
    discover = only_transmit(c.handle(Started(0))).message
    only_transmit(c.handle(PacketReceived(0.1, reply(discover, MT.OFFER))))  # REQUEST 1
    kinds = []
    for _ in range(REQUESTING_ATTEMPTS):
        assert c.next_deadline is not None
        kinds.append(only_transmit(c.handle(TimerFired(c.next_deadline))).message.message_type)
    # the REQUEST is sent REQUESTING_ATTEMPTS times in all, then the client starts over
    assert kinds == [MT.REQUEST] * (REQUESTING_ATTEMPTS - 1) + [MT.DISCOVER]
    assert c.state is State.SELECTING


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
