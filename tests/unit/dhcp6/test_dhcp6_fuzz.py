"""Hypothesis against the DHCPv6 codec and client: decode returns a Message or raises
MalformedMessage, nothing else; what decodes encodes back to the same bytes; built messages
round-trip; and no sequence of packets and timers makes ``Client.handle`` raise."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhcp6 import options as opt
from dhcp6.client import Client, State
from dhcp6.config import Config
from dhcp6.errors import MalformedMessage
from dhcp6.events import (
    DadFailed,
    LeaseBound,
    PacketReceived,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from dhcp6.message import MAX_SIZE, Message, decode, encode

MT = opt.MessageType
IP6 = ipaddress.IPv6Address
DUID = bytes.fromhex("0003000102aabbccddee")
SERVER = bytes.fromhex("000300010200000000fe")
ADDR = IP6("2001:db8:77::50")

u32 = st.integers(0, 2**32 - 1)
addresses = st.builds(IP6, st.integers(0, 2**128 - 1))
duids = st.one_of(
    st.builds(lambda m: b"\0\3\0\1" + m, st.binary(min_size=1, max_size=20)),
    st.builds(lambda u: b"\0\4" + u, st.binary(min_size=16, max_size=16)),
    st.builds(
        lambda t, b: t + b,
        st.sampled_from([b"\0\x09", b"\xff\xff"]),
        st.binary(min_size=1, max_size=60),
    ),
)
label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
names = st.lists(label, min_size=1, max_size=4).map(".".join)
status = st.builds(opt.StatusCode, st.integers(0, 0xFFFF), st.binary(max_size=20))
unknown = st.builds(
    opt.Unknown,
    st.integers(100, 0xFFFF).filter(lambda c: c not in opt.WHERE),
    st.binary(max_size=30),
)
ia_address = st.builds(
    opt.IaAddress,
    addresses,
    u32,
    u32,
    st.lists(st.one_of(status, unknown), max_size=2, unique_by=lambda o: o.code).map(tuple),
)
ia_na = st.builds(
    opt.IaNa,
    u32,
    u32,
    u32,
    st.tuples(st.lists(ia_address, max_size=3), st.lists(status, max_size=1)).map(
        lambda t: (*t[0], *t[1])
    ),
)
singletons = [
    st.builds(opt.ClientId, duids),
    st.builds(opt.ServerId, duids),
    st.builds(opt.OptionRequest, st.lists(st.integers(0, 0xFFFF), max_size=5).map(tuple)),
    st.builds(opt.Preference, st.integers(0, 255)),
    st.builds(opt.ElapsedTime, st.integers(0, 0xFFFF)),
    st.builds(opt.Auth, st.binary(min_size=11, max_size=30)),
    st.builds(opt.Unicast, addresses),
    status,
    st.just(opt.RapidCommit()),
    st.builds(opt.ReconfigureMessage, st.sampled_from([5, 6, 11])),
    st.just(opt.ReconfigureAccept()),
    st.builds(opt.DnsServers, st.lists(addresses, max_size=3).map(tuple)),
    st.builds(opt.DomainList, st.lists(names, max_size=3).map(tuple)),
    st.builds(opt.SolMaxRt, u32),
]


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from([t for t in MT if t not in (MT.RELAY_FORW, MT.RELAY_REPL)]))
    chosen = draw(st.lists(st.sampled_from(range(len(singletons))), unique=True, max_size=6))
    options: list[opt.Option] = [draw(singletons[i]) for i in chosen]
    options += draw(st.lists(st.one_of(ia_na, unknown), max_size=3))
    draw(st.randoms()).shuffle(options)
    return Message(kind, draw(st.integers(0, 0xFFFFFF)), tuple(options))


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(messages())
def test_every_message_round_trips(msg):
    wire = encode(msg)
    if len(wire) <= MAX_SIZE:
        assert decode(wire) == msg


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_are_malformed(data):
    try:
        msg = decode(data)
    except MalformedMessage:
        return
    assert encode(msg) == data  # decode keeps everything: nothing is guessed or dropped


def _mutate(rng: random.Random, wire: bytes) -> bytes:
    b = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(5)
        i = rng.randrange(len(b) + 1)
        if how == 0 and b:
            b[i % len(b)] = rng.randrange(256)
        elif how == 1:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        elif how == 2:
            del b[i : i + rng.randint(1, 8)]
        elif how == 3 and len(b) > 6:  # a length field made to lie
            j = rng.randrange(4, len(b) - 1)
            b[j : j + 2] = struct.pack("!H", rng.choice([0, 1, 0xFFFF, rng.randrange(65536)]))
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(messages(), st.randoms())
def test_mutated_messages_decode_or_are_malformed(msg, rng):
    wire = _mutate(rng, encode(msg))
    try:
        got = decode(wire)
    except MalformedMessage:
        return
    assert encode(got) == wire


@pytest.mark.slow
def test_20000_seeded_mutations_of_real_messages():
    """Cheap and wide: the messages a client meets, each byte-mangled many times over."""
    corpus = [
        encode(Message(MT.REPLY, 5, (opt.ServerId(SERVER), opt.ClientId(DUID), ia, *extra)))
        for ia in (
            opt.IaNa(7, 10, 20, (opt.IaAddress(ADDR, 30, 40, (opt.StatusCode(0, b"ok"),)),)),
            opt.IaNa(7, 0, 0, (opt.StatusCode(2, b"none"),)),
        )
        for extra in (
            (),
            (opt.DnsServers((ADDR,)), opt.DomainList(("example.com", "a.b"))),
            (opt.RapidCommit(), opt.Preference(255), opt.SolMaxRt(60), opt.Auth(bytes(11))),
        )
    ]
    rng = random.Random(6)
    outcomes = {True: 0, False: 0}
    for _ in range(20000):
        wire = _mutate(rng, rng.choice(corpus))
        try:
            got = decode(wire)
        except MalformedMessage:
            outcomes[False] += 1
            continue
        outcomes[True] += 1
        assert encode(got) == wire
    assert min(outcomes.values()) > 2000  # both sides of the codec are exercised


# -- the client ------------------------------------------------------------------------


def _server_answer(rng: random.Random, to: Message) -> bytes:
    """A mostly sane answer, then mangled now and then: ids, statuses, lifetimes, bytes."""
    kind = MT.ADVERTISE if to.msg_type is MT.SOLICIT and rng.random() < 0.7 else MT.REPLY
    lifetimes = sorted(rng.choice([0, 1, 5, 30, 100, 0xFFFFFFFF]) for _ in range(2))
    if rng.random() < 0.2:
        lifetimes.reverse()
    t1, t2 = (rng.choice([0, 1, 10, 50, 0xFFFFFFFF]) for _ in range(2))
    inner: list[opt.Option] = [opt.IaAddress(ADDR, lifetimes[0], lifetimes[1])]
    if rng.random() < 0.2:
        inner.append(opt.StatusCode(rng.randrange(7)))
    o: list[opt.Option] = [
        opt.ServerId(rng.choice([SERVER, b"\0\3\0\1\2\0\0\0\0\xfd"])),
        opt.ClientId(DUID if rng.random() < 0.95 else SERVER),
        opt.IaNa(7 if rng.random() < 0.95 else 8, t1, t2, tuple(inner)),
    ]
    if rng.random() < 0.3:
        o.append(opt.RapidCommit())
    if rng.random() < 0.3:
        o.append(opt.Preference(rng.choice([0, 255])))
    if rng.random() < 0.1:
        o.append(opt.StatusCode(rng.randrange(7)))
    if rng.random() < 0.1:
        o.append(opt.SolMaxRt(rng.choice([0, 60, 100000])))
    if rng.random() < 0.05:
        kind = MT.RECONFIGURE
    xid = to.xid if rng.random() < 0.95 else rng.randrange(1 << 24)
    wire = encode(Message(kind, xid, tuple(o)))
    return _mutate(rng, wire) if rng.random() < 0.2 else wire


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.booleans(), st.booleans())
def test_no_conversation_makes_the_client_raise(rng, rapid, delay):
    config = Config(
        duid=DUID,
        iaid=7,
        rapid_commit=rapid,
        solicit_delay_max_s=1.0 if delay else 0.0,
        timeout_s=30.0,
    )
    c = Client(config, rng=random.Random(rng.random()))
    now = 0.0
    actions = c.handle(Started(now))
    for _ in range(150):
        if c.state is State.FAILED:
            break
        for a in actions:
            assert not isinstance(a, LeaseBound) or a.lease.expires_at > now
        out = [a.message for a in actions if isinstance(a, Transmit)]
        choice = rng.random()
        if out and choice < 0.7:
            actions = c.handle(PacketReceived(now, _server_answer(rng, out[-1])))
        elif choice < 0.72:
            actions = c.handle(DadFailed(now, ADDR))
        elif choice < 0.73:
            actions = c.handle(ReleaseRequested(now))
        elif c.next_deadline is not None:
            assert c.next_deadline >= now
            now = c.next_deadline
            actions = c.handle(TimerFired(now))
        else:
            break
    assert c.stats.sent >= 0
