"""ConnectionGuard's decisions without a queue: a first packet as NetfilterQueue hands it over
(a fake with its four methods) and a flow the loopback relay asks about go through one path,
the same policy, counts and audit lines."""

from __future__ import annotations

import io
import ipaddress
import json
import struct

import pytest

from lark_async.backends.connguard import MARK_REFUSED, ConnectionGuard
from lark_async.decide.audit import AuditTrail
from lark_async.decide.connpolicy import admin_policy, parse_rules

IP = ipaddress.ip_address
POLICY = admin_policy(
    parse_rules(
        "allow udp 127.0.0.53:53, allow tcp 10.0.0.0/8:443, deny any 0.0.0.0/0, "
        "allow udp [::1]:53, allow tcp [2001:db8::/32]:443, allow icmp [2001:db8::/32]"
    ),
    "deny",
)


class Packet:
    """What the queue's callback gets: the payload, and the verdict calls, recorded."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.calls: list[object] = []

    def get_payload(self) -> bytes:
        return self.payload

    def accept(self) -> None:
        self.calls.append("accept")

    def set_mark(self, mark: int) -> None:
        self.calls.append(("mark", mark))

    def repeat(self) -> None:
        self.calls.append("repeat")


def ipv4(proto: int, src: str, dst: str, sport: int = 40000, dport: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, proto, 0, IP(src).packed, IP(dst).packed
    )
    return header + struct.pack("!HHHH", sport, dport, 8, 0)


def ipv6(next_header: int, src: str, dst: str, payload: bytes) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000, len(payload), next_header, 64)
        + IP(src).packed
        + IP(dst).packed
        + payload
    )


def guard(audit: io.StringIO | None = None) -> ConnectionGuard:
    return ConnectionGuard(POLICY, "job.1", audit, AuditTrail("job.1", 1 << 20))


def records(audit: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in audit.getvalue().splitlines()]
    for line in lines:
        del line["time"]
    return lines


async def test_a_queued_first_packet_is_accepted_or_sent_back_to_be_rejected():
    audit = io.StringIO()
    g = guard(audit)
    allowed = Packet(ipv4(6, "10.1.0.2", "10.9.9.9", dport=443))
    denied = Packet(ipv4(17, "10.1.0.2", "8.8.8.8", dport=53))
    g._decide(allowed)
    g._decide(denied)
    assert allowed.calls == ["accept"]
    assert denied.calls == [("mark", MARK_REFUSED), "repeat"]
    assert (g.counts.allowed, g.counts.denied, g.counts.last_denied) == (1, 1, "8.8.8.8:53/udp")
    assert records(audit) == [
        {"job": "job.1", "protocol": "tcp", "source": "10.1.0.2", "destination": "10.9.9.9",
         "port": 443, "verdict": "allow", "rule": "allow tcp 10.0.0.0/8:443"},
        {"job": "job.1", "protocol": "udp", "source": "10.1.0.2", "destination": "8.8.8.8",
         "port": 53, "verdict": "deny", "rule": "deny any 0.0.0.0/0"},
    ]  # fmt: skip


async def test_ipv6_first_packets_are_decided_by_the_same_policy():
    audit = io.StringIO()
    g = guard(audit)
    syn = Packet(ipv6(6, "2001:db8:5::2", "2001:db8::443", struct.pack("!HHII", 40000, 443, 0, 0)))
    udp = Packet(ipv6(17, "2001:db8:5::2", "2001:4860::8888", struct.pack("!HHHH", 5000, 53, 8, 0)))
    echo = Packet(ipv6(58, "2001:db8:5::2", "2001:db8::1", b"\x80\0\0\0\0\1\0\1"))
    for packet in (syn, udp, echo):
        g._decide(packet)
    assert syn.calls == ["accept"] and echo.calls == ["accept"]
    assert udp.calls == [("mark", MARK_REFUSED), "repeat"]
    assert (g.counts.allowed, g.counts.denied) == (2, 1)
    assert g.counts.last_denied == "[2001:4860::8888]:53/udp"
    assert records(audit) == [
        {"job": "job.1", "protocol": "tcp", "source": "2001:db8:5::2",
         "destination": "2001:db8::443", "port": 443, "verdict": "allow",
         "rule": "allow tcp [2001:db8::/32]:443"},
        {"job": "job.1", "protocol": "udp", "source": "2001:db8:5::2",
         "destination": "2001:4860::8888", "port": 53, "verdict": "deny",
         "rule": "default deny"},
        {"job": "job.1", "protocol": "icmpv6", "source": "2001:db8:5::2",
         "destination": "2001:db8::1", "port": None, "verdict": "allow",
         "rule": "allow icmp [2001:db8::/32]"},
    ]  # fmt: skip


async def test_a_mapped_destination_is_decided_as_its_ipv4_one():
    audit = io.StringIO()
    g = guard(audit)
    packet = Packet(ipv6(6, "::ffff:10.1.0.2", "::ffff:8.8.8.8", struct.pack("!HH", 1, 443)))
    g._decide(packet)
    assert packet.calls == [("mark", MARK_REFUSED), "repeat"]
    assert g.counts.last_denied == "[::ffff:808:808]:443/tcp"
    assert records(audit)[0]["rule"] == "deny any 0.0.0.0/0 (as 8.8.8.8)"


@pytest.mark.parametrize(
    ("payload", "rule", "source", "destination", "last"),
    [
        (b"", "unreadable: an empty packet", None, None, "unreadable"),
        (b"\x60" + bytes(38), "unreadable: an IPv6 header cut short", None, None, "unreadable"),
        (ipv6(43, "2001:db8:5::2", "2001:db8::1", bytes([6, 0, 4, 0]) + bytes(8)),
         "unreadable: IPv6 with a routing header", "2001:db8:5::2", "2001:db8::1",
         "[2001:db8::1]"),
        (ipv6(44, "2001:db8:5::2", "2001:db8::1", bytes([17, 0, 0, 1]) + bytes(8)),
         "unreadable: IPv6 with a fragment header", "2001:db8:5::2", "2001:db8::1",
         "[2001:db8::1]"),
        (ipv4(17, "10.1.0.2", "10.9.9.9")[:6] + b"\x20\0" + ipv4(17, "10.1.0.2", "10.9.9.9")[8:],
         "unreadable: an IPv4 fragment", "10.1.0.2", "10.9.9.9", "10.9.9.9"),
    ],
)  # fmt: skip
async def test_an_unreadable_packet_is_refused_and_said_why(
    payload, rule, source, destination, last
):
    audit = io.StringIO()
    g = guard(audit)
    packet = Packet(payload)
    g._decide(packet)
    assert packet.calls == [("mark", MARK_REFUSED), "repeat"]
    assert (g.counts.denied, g.counts.last_denied) == (1, last)
    assert records(audit) == [
        {"job": "job.1", "protocol": None, "source": source, "destination": destination,
         "port": None, "verdict": "deny", "rule": rule}
    ]  # fmt: skip


async def test_a_relayed_flow_is_decided_counted_and_audited_as_a_queued_one():
    """The relay's DNS flow to 127.0.0.53:53 writes the line a queued packet to it would."""
    queued, relayed = io.StringIO(), io.StringIO()
    g = guard(queued)
    g._decide(Packet(ipv4(17, "127.0.0.1", "127.0.0.53", dport=53)))
    h = guard(relayed)
    assert h.decide_relayed(17, IP("127.0.0.1"), IP("127.0.0.53"), 53) is True
    assert records(relayed) == records(queued) == [
        {"job": "job.1", "protocol": "udp", "source": "127.0.0.1", "destination": "127.0.0.53",
         "port": 53, "verdict": "allow", "rule": "allow udp 127.0.0.53:53"}
    ]  # fmt: skip
    assert h.counts == g.counts
    assert h.decide_relayed(6, IP("127.0.0.1"), IP("127.0.0.1"), 3128) is False
    assert (h.counts.allowed, h.counts.denied) == (1, 1)
    assert h.counts.last_denied == "127.0.0.1:3128/tcp"
    assert h.attributes()["NetworkConnectionsDenied"] == 1


async def test_relayed_decisions_are_coalesced_like_queued_ones():
    audit = io.StringIO()
    g = guard(audit)
    for _ in range(5):
        g.decide_relayed(17, IP("127.0.0.1"), IP("127.0.0.53"), 53)
    g.flush_audit()
    lines = records(audit)
    assert len(lines) == 2 and lines[1]["count"] == 4
    assert g.counts.allowed == 5


async def test_a_relayed_ipv6_flow_is_decided_by_the_ipv6_entries():
    audit = io.StringIO()
    g = guard(audit)
    assert g.decide_relayed(17, IP("::1"), IP("::1"), 53) is True
    assert g.decide_relayed(6, IP("::1"), IP("::1"), 53) is False
    assert g.counts.last_denied == "[::1]:53/tcp"
    assert records(audit) == [
        {"job": "job.1", "protocol": "udp", "source": "::1", "destination": "::1", "port": 53,
         "verdict": "allow", "rule": "allow udp [::1]:53"},
        {"job": "job.1", "protocol": "tcp", "source": "::1", "destination": "::1", "port": 53,
         "verdict": "deny", "rule": "default deny"},
    ]  # fmt: skip


async def test_the_verdict_goes_out_before_the_audit_line_can_fail():
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    g = guard(Full())
    packet = Packet(ipv4(6, "10.1.0.2", "10.9.9.9", dport=443))
    g._decide(packet)  # (logged; the refusal after it cannot change a given verdict)
    assert packet.calls[0] == "accept"
    with pytest.raises(OSError):
        g.decide_relayed(6, IP("127.0.0.1"), IP("10.9.9.9"), 443)
