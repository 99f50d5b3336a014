"""Timelines with explicit ``now`` against the sans-IO DHCPv6 client, and fake servers."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Callable

import pytest

from dhcp6 import options as opt
from dhcp6.client import (
    DECLINE,
    EVENTS,
    IGNORED,
    MAX_ADVERTS,
    NEXT_STATES,
    RENEW,
    REPLIES,
    REQUEST,
    Client,
    State,
)
from dhcp6.config import Config
from dhcp6.errors import LocalProtocolError
from dhcp6.events import (
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
    DadFailed,
    GaveUp,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReconfigureIgnored,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from dhcp6.message import Message, encode

MT = opt.MessageType
ST = opt.Status
IP6 = ipaddress.IPv6Address
DUID = bytes.fromhex("0003000102aabbccddee")
SERVER = bytes.fromhex("000300010200000000fe")
OTHER = bytes.fromhex("000300010200000000fd")
ADDR, ADDR2 = IP6("2001:db8:77::50"), IP6("2001:db8:77::51")
IAID = 7


def make_client(**kw) -> Client:
    kw.setdefault("solicit_delay_max_s", 0.0)
    kw.setdefault("timeout_s", 60.0)
    return Client(Config(duid=DUID, iaid=IAID, **kw), rng=random.Random(1))


def answer(
    to: Message,
    kind: MT = MT.REPLY,
    server: bytes = SERVER,
    address: IP6 = ADDR,
    t1: int = 100,
    t2: int = 160,
    preferred: int = 200,
    valid: int = 300,
    ia_status: int | None = None,
    status: int | None = None,
    extra: tuple[opt.Option, ...] = (),
    client: bytes = DUID,
    xid: int | None = None,
    iaid: int = IAID,
) -> bytes:
    """A server's answer to ``to``: one IA_NA with one address, as a sane server sends."""
    inner: tuple[opt.Option, ...] = (opt.IaAddress(address, preferred, valid),)
    if ia_status is not None:
        inner = (opt.StatusCode(ia_status, b"sorry"),)
    o: list[opt.Option] = [
        opt.ServerId(server),
        opt.ClientId(client),
        opt.IaNa(iaid, t1, t2, inner),
    ]
    if status is not None:
        o = [opt.ServerId(server), opt.ClientId(client), opt.StatusCode(status)]
    o += extra
    return encode(Message(kind, to.xid if xid is None else xid, tuple(o)))


def sent(actions) -> Message:
    tx = [a for a in actions if isinstance(a, Transmit)]
    assert len(tx) == 1, actions
    assert tx[0].dest == ALL_DHCP_RELAY_AGENTS_AND_SERVERS == IP6("ff02::1:2")
    return tx[0].message


def elapsed(msg: Message) -> int:
    e = msg.get(opt.ElapsedTime)
    assert e is not None
    return e.centiseconds


def bound(c: Client, now: float = 0.0, **kw) -> Message:
    """Through SOLICIT / ADVERTISE (255) / REQUEST / REPLY at ``now``; the REQUEST."""
    solicit = sent(c.handle(Started(now)))
    adv = answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))
    request = sent(c.handle(PacketReceived(now, adv)))
    [b] = c.handle(PacketReceived(now, answer(request, **kw)))
    assert isinstance(b, LeaseBound)
    return request


# -- acquiring ------------------------------------------------------------------------


def test_solicit_advertise_request_reply():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    assert solicit.msg_type is MT.SOLICIT and c.state is State.SOLICITING
    assert solicit.get(opt.ClientId) == opt.ClientId(DUID)
    assert solicit.get(opt.IaNa) == opt.IaNa(IAID)
    assert solicit.get(opt.RapidCommit) is not None and elapsed(solicit) == 0
    # section 18.2.1: the first RT is strictly over IRT, at most IRT * 1.1
    first_rt = c.next_deadline
    assert 1.0 < first_rt <= 1.1
    # an ADVERTISE without preference 255 waits for the first RT
    assert c.handle(PacketReceived(0.2, answer(solicit, MT.ADVERTISE))) == []
    assert c.next_deadline == first_rt
    request = sent(c.handle(TimerFired(first_rt)))
    assert request.msg_type is MT.REQUEST and request.xid != solicit.xid
    assert request.get(opt.ServerId) == opt.ServerId(SERVER)
    assert request.get(opt.IaNa) == opt.IaNa(IAID, 0, 0, (opt.IaAddress(ADDR),))
    assert elapsed(request) == 0 and c.state is State.REQUESTING
    dns = opt.DnsServers((IP6("2001:db8::53"),))
    domains = opt.DomainList(("example.com",))
    [b] = c.handle(PacketReceived(first_rt + 0.01, answer(request, extra=(dns, domains))))
    assert isinstance(b, LeaseBound) and c.state is State.BOUND and c.lease == b.lease
    lease = b.lease
    assert (lease.address, lease.server_duid, lease.start) == (ADDR, SERVER, first_rt)
    assert lease.dns_servers == dns.addresses and lease.domains == ("example.com",)
    assert c.next_deadline == first_rt + 100  # T1
    assert c.stats.sent == 2 and c.stats.dropped == 0


def test_preference_255_is_taken_at_once():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    c.handle(PacketReceived(0.1, answer(solicit, MT.ADVERTISE, server=OTHER)))
    adv = answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))
    request = sent(c.handle(PacketReceived(0.2, adv)))
    assert request.get(opt.ServerId) == opt.ServerId(SERVER)


def test_the_highest_preference_wins_then_the_first_heard():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    for server, pref in ((OTHER, 3), (SERVER, 9), (bytes.fromhex("0003000102000000aaaa"), 9)):
        adv = answer(solicit, MT.ADVERTISE, server=server, extra=(opt.Preference(pref),))
        assert c.handle(PacketReceived(0.1, adv)) == []
    request = sent(c.handle(TimerFired(c.next_deadline)))
    assert request.get(opt.ServerId) == opt.ServerId(SERVER)
    # NoAddrsAvail from the chosen one: the next best, at once (18.2.10.1)
    nxt = sent(c.handle(PacketReceived(1.5, answer(request, ia_status=ST.NO_ADDRS_AVAIL))))
    assert nxt.msg_type is MT.REQUEST
    assert nxt.get(opt.ServerId) == opt.ServerId(bytes.fromhex("0003000102000000aaaa"))


def test_after_the_first_rt_any_advertise_is_taken_at_once():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    again = sent(c.handle(TimerFired(c.next_deadline)))
    assert again.xid == solicit.xid and elapsed(again) > 100
    request = sent(c.handle(PacketReceived(1.5, answer(again, MT.ADVERTISE))))
    assert request.msg_type is MT.REQUEST


def test_rapid_commit_reply_to_solicit():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    no_flag = answer(solicit)
    assert c.handle(PacketReceived(0.1, no_flag)) == []  # 21.14: MUST carry RAPID_COMMIT
    assert c.stats.dropped_why["a REPLY to SOLICIT without RAPID_COMMIT"] == 1
    [b] = c.handle(PacketReceived(0.1, answer(solicit, extra=(opt.RapidCommit(),))))
    assert isinstance(b, LeaseBound) and b.lease.start == 0.0


def test_a_rapid_reply_we_did_not_ask_for_is_dropped():
    c = make_client(rapid_commit=False)
    solicit = sent(c.handle(Started(0.0)))
    assert solicit.get(opt.RapidCommit) is None
    assert c.handle(PacketReceived(0.1, answer(solicit, extra=(opt.RapidCommit(),)))) == []
    assert c.state is State.SOLICITING
    assert c.stats.dropped_why == {"a REPLY to a SOLICIT without rapid commit": 1}


def test_a_rapid_refusal_keeps_soliciting_and_the_server_is_not_taken_again():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    refusal = answer(solicit, status=ST.NO_ADDRS_AVAIL, extra=(opt.RapidCommit(),))
    assert c.handle(PacketReceived(0.1, refusal)) == []
    assert c.handle(PacketReceived(0.2, answer(solicit, MT.ADVERTISE))) == []
    assert c.stats.dropped_why["an ADVERTISE from a server that refused us"] == 1
    adv = answer(solicit, MT.ADVERTISE, server=OTHER)
    c.handle(PacketReceived(0.3, adv))
    request = sent(c.handle(TimerFired(c.next_deadline)))
    assert request.get(opt.ServerId) == opt.ServerId(OTHER)


def test_the_first_solicit_may_wait_sol_max_delay():
    c = make_client(solicit_delay_max_s=1.0)
    assert c.handle(Started(5.0)) == [] and c.state is State.INIT
    assert 5.0 <= c.next_deadline <= 6.0
    assert c.next_deadline > 5.0 and c.handle(TimerFired(5.0)) == []  # early: nothing
    solicit = sent(c.handle(TimerFired(c.next_deadline)))
    assert solicit.msg_type is MT.SOLICIT and elapsed(solicit) == 0


def test_solicit_retransmission_follows_section_15_up_to_sol_max_rt():
    c = make_client(timeout_s=1e6, sol_max_rt_s=100.0)
    c.handle(Started(0.0))
    times = [0.0]
    for _ in range(12):
        now = c.next_deadline
        sent(c.handle(TimerFired(now)))
        times.append(now)
    rts = [b - a for a, b in itertools.pairwise(times)]
    assert 1.0 < rts[0] <= 1.1
    for prev, rt in itertools.pairwise(rts):
        assert rt == pytest.approx(min(2 * prev, 100), rel=0.11)
    assert all(rt <= 110 for rt in rts) and rts[-1] >= 90


def test_a_server_sol_max_rt_replaces_ours_21_24():
    c = make_client(timeout_s=1e6, sol_max_rt_s=3600.0)
    solicit = sent(c.handle(Started(0.0)))
    # an ADVERTISE with no address is ignored, but its SOL_MAX_RT is taken (18.2.9)
    adv = answer(solicit, MT.ADVERTISE, status=ST.NO_ADDRS_AVAIL, extra=(opt.SolMaxRt(60),))
    assert c.handle(PacketReceived(0.1, adv)) == []
    now = 0.0
    for _ in range(10):
        prev, now = now, c.next_deadline
        c.handle(TimerFired(now))
    assert now - prev <= 66


def test_request_gives_up_on_a_silent_server_after_req_max_rc():
    c = make_client(timeout_s=1e6)
    solicit = sent(c.handle(Started(0.0)))
    c.handle(PacketReceived(0.1, answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))))
    for _ in range(REQUEST.mrc - 1):
        again = sent(c.handle(TimerFired(c.next_deadline)))
        assert again.msg_type is MT.REQUEST
    assert again.get(opt.ElapsedTime).centiseconds > 0
    solicit2 = sent(c.handle(TimerFired(c.next_deadline)))  # the 10th went unanswered
    assert solicit2.msg_type is MT.SOLICIT and c.state is State.SOLICITING


@pytest.mark.parametrize("status", [ST.UNSPEC_FAIL, ST.USE_MULTICAST])
def test_unspecfail_and_usemulticast_leave_the_request_to_retransmit(status):
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    request = sent(
        c.handle(PacketReceived(0, answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))))
    )
    assert c.handle(PacketReceived(0.1, answer(request, status=status))) == []
    assert c.state is State.REQUESTING
    assert c.stats.dropped_why == {f"a REPLY saying {status.name}": 1}
    assert sent(c.handle(TimerFired(c.next_deadline))).xid == request.xid


def test_not_on_link_solicits_again():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    c.handle(PacketReceived(0.0, answer(solicit, MT.ADVERTISE, server=OTHER)))
    request = sent(
        c.handle(PacketReceived(0.0, answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))))
    )
    again = sent(c.handle(PacketReceived(0.1, answer(request, ia_status=ST.NOT_ON_LINK))))
    assert again.msg_type is MT.SOLICIT  # not the other ADVERTISE: 18.2.10.1


# -- lying servers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"client": OTHER}, "another client's identifier"),
        ({"xid": 0}, "another transaction"),
        ({"server": OTHER}, "a REPLY from a server not asked"),
        ({"preferred": 400, "valid": 300}, "a preferred lifetime over the valid one"),
        ({"t1": 200, "t2": 100}, "T1 after T2"),
        ({"iaid": 8}, "no IA_NA for our IAID"),
        ({"valid": 0, "preferred": 0}, "an address with a valid lifetime of 0"),
        ({"address": IP6("ff02::1")}, "an address no host can have"),
    ],
)
def test_lying_replies_are_dropped_and_named(kw, why):
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    request = sent(
        c.handle(PacketReceived(0, answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))))
    )
    if "xid" in kw and request.xid == 0:
        kw = {"xid": 1}
    assert c.handle(PacketReceived(0.1, answer(request, **kw))) == []
    assert c.stats.dropped_why[why] == 1 and c.state is State.REQUESTING
    [b] = c.handle(PacketReceived(0.2, answer(request)))
    assert isinstance(b, LeaseBound)


def test_no_addrs_avail_from_every_server_ends_in_giving_up_with_a_reason():
    c = make_client(timeout_s=30.0)
    now, seen = 0.0, []
    actions = c.handle(Started(now))
    while c.state is not State.FAILED:
        for a in actions:
            if isinstance(a, Transmit):
                m = a.message
                if m.msg_type is MT.SOLICIT:
                    actions = c.handle(
                        PacketReceived(now, answer(m, MT.ADVERTISE, extra=(opt.Preference(255),)))
                    )
                    break
                if m.msg_type is MT.REQUEST:
                    actions = c.handle(PacketReceived(now, answer(m, ia_status=ST.NO_ADDRS_AVAIL)))
                    break
        else:
            seen += actions
            now = c.next_deadline
            actions = c.handle(TimerFired(now))
            continue
        seen += actions
    [gave_up] = [a for a in seen + actions if isinstance(a, GaveUp)]
    assert now == 30.0 and c.next_deadline is None
    assert gave_up.reason == f"no lease after 30 s: server {SERVER.hex()} said NO_ADDRS_AVAIL"
    # the refusing server's ADVERTISEs were ignored after the refusal: few packets, no storm
    assert c.stats.sent < 15


def test_adverts_offering_nothing_are_named_when_giving_up():
    """Section 18.2.9: an ADVERTISE saying NoAddrsAvail is ignored, yet the give-up says
    which server said it rather than "no server answered"."""
    c = make_client(timeout_s=10.0, rapid_commit=False)
    actions = c.handle(Started(0.0))
    while c.state is State.SOLICITING:
        for a in actions:
            if isinstance(a, Transmit):
                full = answer(a.message, MT.ADVERTISE, ia_status=ST.NO_ADDRS_AVAIL)
                assert c.handle(PacketReceived(c.next_deadline - 0.01, full)) == []
        actions = c.handle(TimerFired(c.next_deadline))
    assert actions == [GaveUp(f"no lease after 10 s: server {SERVER.hex()} said NO_ADDRS_AVAIL")]
    assert set(c.stats.dropped_why) == {"an ADVERTISE saying NO_ADDRS_AVAIL"}


def test_silence_gives_up_at_the_timeout():
    c = make_client(timeout_s=10.0)
    c.handle(Started(0.0))
    actions = []
    while c.state is State.SOLICITING:
        actions = c.handle(TimerFired(c.next_deadline))
    assert actions == [GaveUp("no lease after 10 s: no server answered")]
    assert c.state is State.FAILED and c.next_deadline is None
    assert c.handle(TimerFired(99.0)) == [] and c.handle(ReleaseRequested(99.0)) == []
    assert c.handle(DadFailed(99.0, ADDR)) == []


def test_garbage_and_messages_of_no_use_are_dropped():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    assert c.handle(PacketReceived(0.1, b"\x07\x00")) == []
    assert c.handle(PacketReceived(0.1, answer(solicit, MT.REQUEST))) == []
    assert c.stats.dropped_why == {"malformed": 1, "REQUEST while SOLICITING": 1}


def test_reconfigure_is_ignored_and_logged_sparingly():
    c = make_client()
    bound(c)
    reconf = encode(
        Message(
            MT.RECONFIGURE, 0, (opt.ServerId(SERVER), opt.ClientId(DUID), opt.ReconfigureMessage(5))
        )
    )
    got = [c.handle(PacketReceived(1.0, reconf)) for _ in range(5)]
    assert got == [
        [ReconfigureIgnored(1)],
        [ReconfigureIgnored(2)],
        [],
        [ReconfigureIgnored(4)],
        [],
    ]
    assert c.state is State.BOUND and c.stats.dropped_why["RECONFIGURE (not authenticated)"] == 5


# -- keeping the lease ---------------------------------------------------------------


def test_renew_at_t1_to_the_server_then_bound_again():
    c = make_client()
    bound(c)
    assert c.next_deadline == 100.0
    renew = sent(c.handle(TimerFired(100.0)))
    assert renew.msg_type is MT.RENEW and c.state is State.RENEWING
    assert renew.get(opt.ServerId) == opt.ServerId(SERVER)
    assert renew.get(opt.IaNa) == opt.IaNa(IAID, 0, 0, (opt.IaAddress(ADDR),))
    assert 109 <= c.next_deadline <= 111  # REN_TIMEOUT 10 s +-10 %
    again = sent(c.handle(TimerFired(c.next_deadline)))
    assert again.xid == renew.xid and elapsed(again) >= 900
    assert c.handle(PacketReceived(112.0, answer(renew, server=OTHER))) == []  # not asked
    assert c.stats.dropped_why == {"a REPLY from a server not asked": 1}
    [r] = c.handle(PacketReceived(112.0, answer(again)))
    assert isinstance(r, LeaseRenewed) and r.lease.start == 100.0
    assert c.state is State.BOUND and c.next_deadline == 200.0


def test_rebind_at_t2_to_any_server_and_a_second_one_answers():
    c = make_client()
    bound(c)
    renew = sent(c.handle(TimerFired(100.0)))
    now = 100.0
    while True:
        now = c.next_deadline
        msg = sent(c.handle(TimerFired(now)))
        if msg.msg_type is MT.REBIND:
            break
        assert msg.xid == renew.xid and now < 160
    assert now == 160.0 and c.state is State.REBINDING
    assert msg.get(opt.ServerId) is None
    [r] = c.handle(PacketReceived(161.0, answer(msg, server=OTHER, address=ADDR2)))
    assert isinstance(r, LeaseRenewed)
    assert (r.lease.server_duid, r.lease.address) == (OTHER, ADDR2)
    renew2 = sent(c.handle(TimerFired(c.next_deadline)))
    assert renew2.get(opt.ServerId) == opt.ServerId(OTHER)


def test_the_lease_ends_at_its_valid_lifetime():
    c = make_client()
    bound(c)
    now, actions = 0.0, []
    while not any(isinstance(a, LeaseLost) for a in actions):
        now = c.next_deadline
        actions = c.handle(TimerFired(now))
    assert now == 300.0
    lost, solicit = actions
    assert isinstance(lost, LeaseLost) and lost.reason == "expired"
    assert lost.lease.address == ADDR
    assert solicit.message.msg_type is MT.SOLICIT and c.state is State.SOLICITING
    # a new acquisition, with its own overall timeout
    while c.state is State.SOLICITING:
        actions = c.handle(TimerFired(c.next_deadline))
    assert isinstance(actions[0], GaveUp) and c.next_deadline is None


def test_no_binding_on_renew_requests_the_binding_again():
    c = make_client()
    bound(c)
    renew = sent(c.handle(TimerFired(100.0)))
    request = sent(c.handle(PacketReceived(100.1, answer(renew, ia_status=ST.NO_BINDING))))
    assert request.msg_type is MT.REQUEST and c.state is State.REQUESTING
    assert request.get(opt.IaNa) == opt.IaNa(IAID, 0, 0, (opt.IaAddress(ADDR),))
    assert c.lease is not None  # still held, still used
    [r] = c.handle(PacketReceived(100.2, answer(request)))
    assert isinstance(r, LeaseRenewed) and c.state is State.BOUND
    assert r.lease.address == ADDR and r.lease.start == 100.1  # the REQUEST began then


def test_no_binding_then_refused_loses_the_lease():
    c = make_client()
    bound(c)
    renew = sent(c.handle(TimerFired(100.0)))
    request = sent(c.handle(PacketReceived(100.1, answer(renew, ia_status=ST.NO_BINDING))))
    lost, solicit = c.handle(PacketReceived(100.2, answer(request, ia_status=ST.NO_ADDRS_AVAIL)))
    assert lost == LeaseLost(lost.lease, "NO_ADDRS_AVAIL") and lost.lease.address == ADDR
    assert solicit.message.msg_type is MT.SOLICIT


def test_other_refusals_of_a_renew_keep_the_lease():
    c = make_client()
    bound(c)
    renew = sent(c.handle(TimerFired(100.0)))
    assert c.handle(PacketReceived(100.1, answer(renew, status=ST.UNSPEC_FAIL))) == []
    assert c.state is State.RENEWING and c.lease is not None
    assert c.handle(PacketReceived(100.1, answer(renew, t1=200, t2=100))) == []
    assert c.stats.dropped_why == {"a REPLY saying UNSPEC_FAIL": 1, "T1 after T2": 1}


# -- leaving -------------------------------------------------------------------------


def test_release_is_sent_retransmitted_and_ends_with_a_reply():
    c = make_client()
    bound(c)
    actions = c.handle(ReleaseRequested(50.0))
    release = sent(actions)
    assert (
        actions[1] == LeaseLost(c_lease := actions[1].lease, "released") and c_lease.address == ADDR
    )
    assert release.msg_type is MT.RELEASE and release.get(opt.ServerId) == opt.ServerId(SERVER)
    assert release.get(opt.ClientId) == opt.ClientId(DUID)
    assert release.get(opt.IaNa).iaid == IAID
    assert release.get(opt.IaNa).addresses == (opt.IaAddress(ADDR),)
    assert c.state is State.RELEASED and c.lease is None
    again = sent(c.handle(TimerFired(c.next_deadline)))
    assert again.xid == release.xid
    assert c.handle(PacketReceived(52.0, answer(again, server=OTHER, status=0))) == []
    assert c.stats.dropped_why == {"a REPLY from a server not asked": 1}
    assert c.handle(PacketReceived(52.0, answer(again, status=0))) == []
    assert c.next_deadline is None
    assert c.handle(ReleaseRequested(53.0)) == [] and c.stats.ignored_why["a second release"] == 1


def test_release_stops_after_rel_max_rc():
    c = make_client()
    bound(c)
    c.handle(ReleaseRequested(50.0))
    count = 1
    while c.next_deadline is not None:
        count += len(c.handle(TimerFired(c.next_deadline)))
    assert count == 4


def test_release_without_a_lease_sends_nothing():
    c = make_client()
    c.handle(Started(0.0))
    assert c.handle(ReleaseRequested(0.5)) == [] and c.state is State.RELEASED
    assert c.next_deadline is None


def test_dad_failure_declines_then_solicits_again():
    c = make_client()
    bound(c)
    assert c.handle(DadFailed(1.0, ADDR2)) == []  # not ours
    assert c.handle(DadFailed(1.0, ADDR2)) == []
    assert c.stats.ignored_why == {"a DAD failure for an address not leased": 2}
    actions = c.handle(DadFailed(1.0, ADDR))
    decline = sent(actions)
    assert actions[1] == LeaseLost(actions[1].lease, "declined")
    assert actions[1].lease.address == ADDR
    assert decline.get(opt.ClientId) == opt.ClientId(DUID)
    assert decline.get(opt.IaNa).iaid == IAID
    assert decline.msg_type is MT.DECLINE and decline.get(opt.ServerId) == opt.ServerId(SERVER)
    assert decline.get(opt.IaNa).addresses == (opt.IaAddress(ADDR),)
    assert c.state is State.DECLINING
    assert c.handle(PacketReceived(1.1, answer(decline, server=OTHER, status=0))) == []
    assert c.stats.dropped_why == {"a REPLY from a server not asked": 1}
    solicit = sent(c.handle(PacketReceived(1.1, answer(decline, status=0))))
    assert solicit.msg_type is MT.SOLICIT
    assert c.handle(DadFailed(1.2, ADDR)) == []  # reported late


def test_an_unanswered_decline_gives_way_to_a_solicit_after_dec_max_rc():
    c = make_client()
    bound(c)
    c.handle(DadFailed(1.0, ADDR))
    kinds = []
    for _ in range(DECLINE.mrc):
        kinds.append(sent(c.handle(TimerFired(c.next_deadline))).msg_type)
    assert kinds == [MT.DECLINE] * (DECLINE.mrc - 1) + [MT.SOLICIT]


# -- what is dropped, word for word (mutation testing: bench/mutation.py dhcp6) -------------


def server(n: int) -> bytes:
    return bytes.fromhex(f"00030001020000{n:06x}")


def test_adverts_past_the_ones_kept_and_a_second_from_one_server_are_dropped():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    for n in range(MAX_ADVERTS):
        assert c.handle(PacketReceived(0.1, answer(solicit, MT.ADVERTISE, server(n)))) == []
    assert c.stats.dropped == 0
    assert c.handle(PacketReceived(0.2, answer(solicit, MT.ADVERTISE, server(0)))) == []
    assert c.handle(PacketReceived(0.2, answer(solicit, MT.ADVERTISE, server(99)))) == []
    assert c.stats.dropped_why == {
        "a second ADVERTISE from one server": 1,
        "an ADVERTISE past the ones kept": 1,
    }
    assert c.stats.dropped == 2


def test_the_servers_kept_are_asked_in_order_of_preference_when_one_refuses():
    """A preference 255 is asked at once; when it refuses, the ADVERTISEs collected before
    it are asked, highest preference first (section 18.2.10.1), each in its turn."""
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    for n, preference in ((1, 1), (2, 5), (3, 3)):
        adv = answer(solicit, MT.ADVERTISE, server(n), extra=(opt.Preference(preference),))
        assert c.handle(PacketReceived(0.1, adv)) == []
    best = answer(solicit, MT.ADVERTISE, server(4), extra=(opt.Preference(255),))
    request = sent(c.handle(PacketReceived(0.2, best)))
    asked = [request.get(opt.ServerId).duid]
    for _ in range(3):
        refusal = answer(request, server=asked[-1], ia_status=ST.NO_ADDRS_AVAIL)
        request = sent(c.handle(PacketReceived(0.3, refusal)))
        asked.append(request.get(opt.ServerId).duid)
    assert asked == [server(4), server(2), server(3), server(1)]


def test_a_rapid_reply_from_a_server_that_refused_us_is_dropped():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    refusal = answer(solicit, status=ST.NO_ADDRS_AVAIL, extra=(opt.RapidCommit(),))
    assert c.handle(PacketReceived(0.1, refusal)) == []
    assert c.handle(PacketReceived(0.2, answer(solicit, extra=(opt.RapidCommit(),)))) == []
    assert c.stats.dropped_why == {"a REPLY from a server that refused us": 1}


LIFE = {"t1": 10, "t2": 16, "preferred": 20, "valid": 30}


def test_a_lease_over_when_its_reply_comes_is_dropped():
    """It counts from when the exchange began: a reply that comes as it ends gives nothing."""
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    rapid = answer(solicit, extra=(opt.RapidCommit(),), **LIFE)
    assert c.handle(PacketReceived(30.0, rapid)) == []
    assert c.stats.dropped_why == {"a lease over when it came": 1}
    [b] = c.handle(PacketReceived(29.9, rapid))
    assert isinstance(b, LeaseBound) and b.lease.start == 0.0
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    adv = answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))
    request = sent(c.handle(PacketReceived(0.0, adv)))
    assert c.handle(PacketReceived(30.0, answer(request, **LIFE))) == []
    assert c.stats.dropped_why == {"a lease over when it came": 1}
    [b] = c.handle(PacketReceived(29.9, answer(request, **LIFE)))
    assert isinstance(b, LeaseBound)


def test_a_reply_with_no_exchange_going_on_is_dropped():
    c = make_client()
    request = bound(c)
    assert c.handle(PacketReceived(1.0, answer(request))) == []
    assert c.stats.dropped_why == {"no exchange going on": 1}


def test_a_reply_of_another_transaction_is_dropped_but_not_named_in_a_give_up():
    c = make_client(timeout_s=10.0)
    solicit = sent(c.handle(Started(0.0)))
    other = answer(solicit, MT.ADVERTISE, xid=solicit.xid ^ 1)
    assert c.handle(PacketReceived(0.1, other)) == []
    assert c.stats.dropped_why == {"another transaction": 1}
    actions = []
    while c.state is State.SOLICITING:
        actions = c.handle(TimerFired(c.next_deadline))
    assert actions == [GaveUp("no lease after 10 s: no server answered")]


def test_a_give_up_names_each_rule_a_reply_broke_and_how_often():
    c = make_client(timeout_s=10.0)
    solicit = sent(c.handle(Started(0.0)))
    for _ in range(2):
        assert c.handle(PacketReceived(0.1, answer(solicit))) == []  # no RAPID_COMMIT
    assert c.handle(PacketReceived(0.1, answer(solicit, client=OTHER))) == []
    actions = []
    while c.state is State.SOLICITING:
        actions = c.handle(TimerFired(c.next_deadline))
    assert actions == [
        GaveUp(
            "no lease after 10 s: replies dropped (a REPLY to SOLICIT without RAPID_COMMIT: 2,"
            " another client's identifier: 1)"
        )
    ]


def test_a_give_up_names_a_long_duid_by_its_first_20_bytes():
    c = make_client(timeout_s=10.0, rapid_commit=False)
    twenty, longer = b"\xff\xff" + bytes(18), b"\xff\xff" + b"\x01" * 19
    actions = c.handle(Started(0.0))
    while c.state is State.SOLICITING:
        for a in actions:
            if isinstance(a, Transmit):
                for duid in (twenty, longer):
                    full = answer(a.message, MT.ADVERTISE, duid, ia_status=ST.NO_ADDRS_AVAIL)
                    assert c.handle(PacketReceived(c.next_deadline - 0.01, full)) == []
        actions = c.handle(TimerFired(c.next_deadline))
    assert actions == [
        GaveUp(
            f"no lease after 10 s: server {twenty.hex()} said NO_ADDRS_AVAIL;"
            f" server {longer[:20].hex()}... said NO_ADDRS_AVAIL"
        )
    ]


def test_an_advert_or_a_rapid_reply_that_breaks_a_rule_is_dropped_by_its_rule():
    c = make_client()
    solicit = sent(c.handle(Started(0.0)))
    assert c.handle(PacketReceived(0.1, answer(solicit, MT.ADVERTISE, t1=200, t2=100))) == []
    rapid = answer(solicit, t1=200, t2=100, extra=(opt.RapidCommit(),))
    assert c.handle(PacketReceived(0.1, rapid)) == []
    assert c.stats.dropped_why == {"T1 after T2": 2}


def test_a_rapid_refusal_is_named_in_the_give_up():
    c = make_client(timeout_s=10.0)
    solicit = sent(c.handle(Started(0.0)))
    refusal = answer(solicit, status=ST.NO_ADDRS_AVAIL, extra=(opt.RapidCommit(),))
    assert c.handle(PacketReceived(0.1, refusal)) == []
    actions = []
    while c.state is State.SOLICITING:
        actions = c.handle(TimerFired(c.next_deadline))
    assert actions == [GaveUp(f"no lease after 10 s: server {SERVER.hex()} said NO_ADDRS_AVAIL")]


def test_retransmissions_follow_section_15_exactly(monkeypatch):
    """RT = IRT + RAND*IRT, then 2*RT + RAND*RT, then MRT + RAND*MRT once past MRT (here
    RENEW's: IRT 10 s, MRT 600 s), with RAND fixed at -0.05."""
    c = make_client()
    bound(c, t1=100, t2=5000, preferred=9000, valid=10000)
    monkeypatch.setattr(c, "_rand", lambda: -0.05)
    now = 100.0
    sent(c.handle(TimerFired(now)))
    rt, seen = RENEW.irt * 0.95, []
    while rt < RENEW.mrt:
        seen.append(pytest.approx(rt))
        rt = rt * 1.95
    seen += [pytest.approx(RENEW.mrt * 0.95)] * 2
    gaps = []
    for _ in seen:
        gaps.append(c.next_deadline - now)
        now = c.next_deadline
        sent(c.handle(TimerFired(now)))
    assert gaps == seen


class Draws(random.Random):
    """A random source whose ``uniform`` draws are given, in order (RAND of section 15)."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(1)
        self.draws = iter(draws)

    def uniform(self, a: float, b: float) -> float:
        r = next(self.draws)
        assert a <= r <= b
        return r


def test_a_retransmission_time_exactly_at_mrt_is_kept_section_15():
    """Section 15 draws MRT + RAND*MRT only when RT *exceeds* MRT: RENEW's RT, 9.375 s and
    doubled six times with RAND 0, lands on its MRT of 600 s exactly and stays there; the
    next one, past it, is MRT + RAND*MRT."""
    c = make_client()
    bound(c, t1=100, t2=5000, preferred=9000, valid=10000)
    c.rng = Draws([-0.0625] + [0.0] * 6 + [0.05, -0.05])
    now = 100.0
    sent(c.handle(TimerFired(now)))
    gaps = []
    for _ in range(7):
        gaps.append(c.next_deadline - now)
        now = c.next_deadline
        assert sent(c.handle(TimerFired(now))).msg_type is MT.RENEW
    gaps.append(c.next_deadline - now)  # 2*600 + 0.05*600 is past MRT: 600 - 0.05*600
    assert gaps == [9.375, 18.75, 37.5, 75.0, 150.0, 300.0, 600.0, 570.0]


def test_a_request_gives_up_at_the_timeout_too():
    c = make_client(timeout_s=5.0)
    solicit = sent(c.handle(Started(0.0)))
    c.handle(PacketReceived(0.1, answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))))
    actions: list = []
    while c.state is State.REQUESTING:
        now = c.next_deadline
        actions = c.handle(TimerFired(now))
    assert now == 5.0 and actions == [GaveUp("no lease after 5 s: no server answered")]


def test_a_server_that_never_answers_a_request_is_named_in_the_give_up():
    c = make_client(timeout_s=250.0)
    solicit = sent(c.handle(Started(0.0)))
    c.handle(PacketReceived(0.1, answer(solicit, MT.ADVERTISE, extra=(opt.Preference(255),))))
    actions = []
    while c.state is not State.FAILED:
        actions = c.handle(TimerFired(c.next_deadline))
    assert actions == [
        GaveUp(f"no lease after 250 s: server {SERVER.hex()} never answered a REQUEST")
    ]


def test_a_held_lease_ends_while_its_binding_is_requested_again():
    """After NoBinding on a RENEW the lease is still used while the REQUEST goes on, and it
    still ends at its valid lifetime, between two retransmissions."""
    c = make_client()
    bound(c, **LIFE)
    renew = sent(c.handle(TimerFired(10.0)))
    sent(c.handle(PacketReceived(10.1, answer(renew, ia_status=ST.NO_BINDING))))
    actions = []
    while c.state is State.REQUESTING:
        now = c.next_deadline
        actions = c.handle(TimerFired(now))
    lost, solicit = actions
    assert now == 30.0 and lost == LeaseLost(lost.lease, "expired")
    assert lost.lease.address == ADDR and solicit.message.msg_type is MT.SOLICIT


def test_an_unanswered_request_for_a_held_binding_goes_back_to_the_lease():
    c = make_client()
    bound(c)
    renew = sent(c.handle(TimerFired(100.0)))
    sent(c.handle(PacketReceived(100.1, answer(renew, ia_status=ST.NO_BINDING))))
    for _ in range(REQUEST.mrc - 1):
        assert sent(c.handle(TimerFired(c.next_deadline))).msg_type is MT.REQUEST
    assert c.handle(TimerFired(c.next_deadline)) == []
    assert c.state is State.BOUND and c.lease is not None and c.lease.address == ADDR


def test_a_release_while_a_held_binding_is_requested_again_releases_the_held_lease():
    c = make_client()
    bound(c)
    renew = sent(c.handle(TimerFired(100.0)))
    sent(c.handle(PacketReceived(100.1, answer(renew, ia_status=ST.NO_BINDING))))
    actions = c.handle(ReleaseRequested(100.5))
    release = sent(actions)
    assert release.msg_type is MT.RELEASE and release.get(opt.IaNa).addresses == (
        opt.IaAddress(ADDR),
    )
    assert actions[1] == LeaseLost(actions[1].lease, "released")
    assert actions[1].lease.address == ADDR


def test_inputs_that_come_late_are_counted_each_time():
    c = make_client()
    c.handle(Started(0.0))
    assert c.handle(DadFailed(0.1, ADDR)) == [] and c.handle(DadFailed(0.2, ADDR)) == []
    assert c.stats.ignored_why == {"a DAD failure with no lease (reported late)": 2}


# -- the tables ------------------------------------------------------------------------


def test_misuse_is_a_local_protocol_error():
    c = make_client()
    assert c.handle(TimerFired(0.0)) == []  # no deadline yet: a stale wake-up
    assert c.handle(DadFailed(0.0, ADDR)) == []  # (ignored: a late report)
    sent(c.handle(Started(0.0)))
    with pytest.raises(LocalProtocolError, match="Started while SOLICITING"):
        c.handle(Started(1.0))
    c = make_client()
    bound(c)
    with pytest.raises(LocalProtocolError, match="Started while BOUND"):
        c.handle(Started(1.0))


def test_started_twice_is_misuse():
    c = make_client(solicit_delay_max_s=1.0)
    c.handle(Started(0.0))
    with pytest.raises(LocalProtocolError, match="Started while INIT"):
        c.handle(Started(0.0))


def test_the_tables_only_name_legal_moves():
    for (state, _kind), _handler in REPLIES.items():
        assert state in NEXT_STATES
    assert not set(EVENTS) & set(IGNORED)
    for s, nexts in NEXT_STATES.items():
        assert s not in (State.RELEASED, State.FAILED) or not nexts


Server = Callable[[float, Message], list[bytes]]


def test_a_whole_life_against_a_fake_server_with_rapid_commit():
    """SOLICIT/REPLY, then renewals every T1 for a long time: one exchange each."""

    def server(now: float, m: Message) -> list[bytes]:
        if m.msg_type is MT.SOLICIT:
            return [answer(m, extra=(opt.RapidCommit(),))]
        if m.msg_type is MT.RENEW:
            return [answer(m)]
        return []

    c = make_client()
    now, log = 0.0, []
    actions = c.handle(Started(now))
    while now < 10_000:
        log += actions
        replies = [r for a in actions if isinstance(a, Transmit) for r in server(now, a.message)]
        actions = [b for r in replies for b in c.handle(PacketReceived(now, r))]
        if not actions:
            now = c.next_deadline
            actions = c.handle(TimerFired(now))
    kinds = [type(a).__name__ for a in log]
    assert kinds[:2] == ["Transmit", "LeaseBound"]
    assert kinds.count("LeaseRenewed") == 99 and "LeaseLost" not in kinds
    assert c.stats.dropped == 0
