"""The fuzz harness of bench/dhcp_fuzz.py, 5,000 inputs of it, in the suite; and the harness
itself checked: its real replies decode as built, and each invariant it states catches a
codec or client broken on purpose."""

from __future__ import annotations

import math
import random
import struct

import pytest
from helpers import dhcp_fuzz as fz

from dhcp import frame, message
from dhcp import options as opt
from dhcp.client import Client
from dhcp.events import LeaseBound, PacketReceived, Started, TimerFired

MT = opt.MessageType


@pytest.mark.slow
def test_5000_mutated_real_replies_keep_every_invariant():
    result = fz.run(5000, seed=16)
    assert not result.failures, fz.report(result)
    assert result.inputs == result.frames == 5000
    # the generator does its job: most replies keep the cookie and decode, many get past the
    # client's xid/chaddr/client id checks, and every state gets its share
    assert result.cookie > 0.85 * 5000 and result.decoded > 0.45 * 5000
    assert result.reached > 0.25 * 5000 and result.accepted > 0.1 * 5000
    assert {s: n > 0.1 * 5000 for s, n in result.by_state.items()} == dict.fromkeys(fz.STATES, True)
    assert result.frames_parsed > 0.2 * 5000 and result.timers > 0


def test_real_replies_in_every_layout_decode_to_what_was_built():
    rng = random.Random(3)
    layouts = set()
    for _ in range(800):
        kind = rng.choice((MT.OFFER, MT.ACK, MT.NAK))
        draft, expected = fz.real_reply(rng, 7, kind, fz.ADDR, fz.SERVER)
        msg = message.decode(draft.wire())
        assert dict(msg.options) == expected
        assert msg.message_type is kind and msg.xid == 7 and msg.chaddr == fz.MAC
        pieces = [t.code for a in draft.areas.values() if a for t in a]
        layouts.add(("file", draft.areas["file"] is not None))
        layouts.add(("sname", draft.areas["sname"] is not None))
        layouts.add(("split", len(pieces) > len(set(pieces))))
        layouts.add(("long", any(len(v) > 255 for v in expected.values())))
    assert layouts == {(k, b) for k in ("file", "sname", "split", "long") for b in (True, False)}


def test_a_real_frame_around_a_reply_parses_back():
    rng = random.Random(4)
    for _ in range(200):
        f, clean = fz.fuzzed_frame(rng, b"payload")
        if clean:
            assert frame.parse_udp(f) == b"payload"


# -- each invariant catches its bug -------------------------------------------------------


def _kinds(result: fz.Result) -> set[str]:
    return {f.invariant for f in result.failures}


def test_a_decode_that_raises_something_else_is_caught(monkeypatch):
    real = message.decode

    def decode(data: bytes) -> message.Message:
        if opt.CLASSLESS_ROUTES in real(data).options:
            raise IndexError("boom")
        return real(data)

    monkeypatch.setattr(message, "decode", decode)
    assert "decode raised" in _kinds(fz.run(300, seed=5))


def test_a_round_trip_that_loses_something_is_caught(monkeypatch):
    real = message.encode

    def encode(msg: message.Message, option_order: tuple[int, ...] = ()) -> bytes:
        return real(msg, option_order)[:-2] + b"\xff"  # drops the last option's last byte

    monkeypatch.setattr(message, "encode", encode)
    assert "round trip changed the message" in _kinds(fz.run(300, seed=5))


def test_a_client_that_raises_on_a_packet_or_a_timer_is_caught(monkeypatch):
    real = Client.handle
    broken: set[int] = set()  # each client breaks once on a timer (then it is dead anyway)

    def handle(self: Client, event):
        if isinstance(event, PacketReceived) and len(event.payload) % 50 == 0:
            raise KeyError(121)
        renewing = self.state.name in ("RENEWING", "REBINDING")
        if isinstance(event, TimerFired) and renewing and id(self) not in broken:
            broken.add(id(self))
            raise ZeroDivisionError
        return real(self, event)

    monkeypatch.setattr(Client, "handle", handle)
    kinds = _kinds(fz.run(300, seed=5))
    assert {"Client.handle(PacketReceived) raised", "Client.handle(TimerFired) raised"} <= kinds


def test_a_deadline_that_is_nan_or_past_is_caught(monkeypatch):
    real = Client.handle
    broken: set[tuple[int, str]] = set()  # once per client and state: the timer must settle

    def handle(self: Client, event):
        actions = real(self, event)
        state = self.state.name
        if (id(self), state) in broken:
            return actions
        if state == "RENEWING":
            broken.add((id(self), state))
            self.next_deadline = math.nan
        elif state == "SELECTING" and isinstance(event, TimerFired):
            broken.add((id(self), state))
            self.next_deadline = event.now - 1
        return actions

    monkeypatch.setattr(Client, "handle", handle)
    wheres = {f.where for f in fz.run(300, seed=5).failures}
    assert "TimerFired in BOUND -> RENEWING" in wheres
    assert "TimerFired in SELECTING -> SELECTING" in wheres


def test_a_parse_udp_that_raises_or_loses_the_payload_is_caught(monkeypatch):
    real = frame.parse_udp

    def parse_udp(f: bytes, dst_port: int = 68, check_udp: bool = True) -> bytes | None:
        if len(f) % 7 == 0:
            raise struct.error("short")
        out = real(f, dst_port, check_udp)
        return out[:-1] if out else out

    monkeypatch.setattr(frame, "parse_udp", parse_udp)
    kinds = _kinds(fz.run(300, seed=5))
    assert {"parse_udp raised", "a real frame does not parse back to its payload"} <= kinds


# -- what the fuzzer found ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "arrives"),
    [
        ({opt.LEASE_TIME: struct.pack("!I", 1)}, 2.0),  # a 1 s lease, ACKed 2 s later
        ({opt.LEASE_TIME: struct.pack("!I", 3600), opt.RENEWAL_TIME: bytes(4)}, 0.01),  # T1 0
    ],
)
def test_an_ack_whose_renewal_time_has_passed_leaves_no_deadline_in_the_past(options, arrives):
    client = fz.make_client(1)
    discover = client.handle(Started(0.0))[0].message
    offer = fz.real_reply(random.Random(1), discover.xid, MT.OFFER, fz.ADDR, fz.SERVER)[0]
    request = client.handle(PacketReceived(0.0, offer.wire()))[0].message  # sent at 0
    ack = message.encode(
        message.Message(
            op=message.BOOTREPLY,
            xid=request.xid,
            chaddr=fz.MAC,
            yiaddr=fz.ADDR,
            options={opt.MESSAGE_TYPE: b"\x05", opt.SERVER_ID: fz.SERVER.packed, **options},
        )
    )
    actions = client.handle(PacketReceived(arrives, ack))
    assert client.next_deadline is not None and client.next_deadline >= arrives
    assert not any(isinstance(a, LeaseBound) and a.lease.expires_at <= arrives for a in actions), (
        "bound a lease that had already expired"
    )
