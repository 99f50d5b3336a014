from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lark_async.decide.connpolicy import (
    ConnectionPolicy,
    admin_policy,
    job_policy,
    parse_flow,
    parse_rules,
)

ADMIN = parse_rules(
    "allow tcp 10.0.0.0/8:443\n deny udp 0.0.0.0/0:53, allow any 192.168.1.0/24, "
    "allow udp 10.1.0.0/16:1000-2000"
)


def ip(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


@pytest.mark.parametrize(
    ("proto", "dst", "port", "allow", "rule"),
    [
        (6, "10.9.9.9", 443, True, "allow tcp 10.0.0.0/8:443"),
        (6, "10.9.9.9", 80, False, "default deny"),
        (17, "192.168.1.7", 53, False, "deny udp 0.0.0.0/0:53"),  # first match wins
        (17, "192.168.1.7", 54, True, "allow any 192.168.1.0/24"),
        (1, "192.168.1.7", None, True, "allow any 192.168.1.0/24"),
        (17, "10.1.2.3", 1500, True, "allow udp 10.1.0.0/16:1000-2000"),
        (17, "10.1.2.3", 2001, False, "default deny"),
        (1, "10.9.9.9", None, False, "default deny"),
    ],
)
def test_first_match_decides_else_the_default(proto, dst, port, allow, rule):
    decision = ConnectionPolicy(ADMIN, False).decide(proto, ip(dst), port)
    assert (decision.allow, decision.rule) == (allow, rule)


def test_default_allow_turns_the_list_into_a_blocklist():
    policy = admin_policy(parse_rules("deny tcp 10.0.0.0/8"), "allow")
    assert policy.decide(6, ip("10.0.0.1"), 22).allow is False
    assert policy.decide(6, ip("8.8.8.8"), 22).rule == "default allow"


@pytest.mark.parametrize(
    "wanted",
    ["tcp 10.0.0.5:443", "tcp 10.2.0.0/16:443", "udp 192.168.1.9:123", "icmp 192.168.1.9",
     "tcp 192.168.1.0/25", "udp 10.1.5.5:1000-1100", "allow tcp 10.0.0.1:443"],
)  # fmt: skip
def test_a_job_may_ask_for_less(wanted):
    policy = ConnectionPolicy(ADMIN, False).narrowed(parse_rules(wanted, job=True))
    assert policy.job_rules is not None


@pytest.mark.parametrize(
    "wanted",
    ["tcp 10.0.0.5", "tcp 10.0.0.5:80", "udp 192.168.1.9:53", "any 192.168.1.0/25",
     "udp 10.1.5.5:900-1100", "tcp 8.8.8.8:443", "any 192.168.1.0/24:50-60"],
)  # fmt: skip
def test_a_job_may_not_ask_for_more(wanted):
    with pytest.raises(ValueError, match="asks for more than this node's connection policy"):
        ConnectionPolicy(ADMIN, False).narrowed(parse_rules(wanted, job=True))


def test_a_narrowed_policy_needs_both_the_admin_and_the_job():
    policy = job_policy(ADMIN, "deny", parse_rules("tcp 10.0.0.5:443", job=True))
    assert policy is not None
    assert policy.decide(6, ip("10.0.0.5"), 443).rule == "job: tcp 10.0.0.5:443"
    assert policy.decide(6, ip("10.0.0.6"), 443).rule == "job: not in LarkAllowedConnections"
    assert policy.decide(6, ip("10.0.0.5"), 80).rule == "default deny"


def test_without_an_admin_policy_a_job_narrows_an_open_network():
    assert job_policy(None, "deny", None) is None  # no policy at all: no queue
    policy = job_policy(None, "deny", parse_rules("udp 10.0.0.1:53", job=True))
    assert policy is not None and policy.decide(17, ip("10.0.0.1"), 53).allow
    assert not policy.decide(6, ip("10.0.0.1"), 80).allow


@pytest.mark.parametrize(
    ("text", "job", "message"),
    [
        ("alow tcp 1.2.3.4", False, "entry 1 'alow tcp 1.2.3.4': unknown verdict 'alow'"),
        ("allow tcp 1.2.3.4, tcp 1.2.3.5", False, "entry 2 'tcp 1.2.3.5': needs allow or deny"),
        ("allow tcp 1.2.3.4:0", False, "port range 0 is not within 1-65535"),
        ("allow tcp 1.2.3.4:70000", False, "port range 70000 is not within 1-65535"),
        ("allow tcp 1.2.3.4:9-3", False, "port range 9-3 is not within"),
        ("allow icmp 1.2.3.4:7", False, "icmp has no ports"),
        ("allow tcp 1.2.3.999", False, "'1.2.3.999' is not an IPv4 address"),
        ("allow sctp 1.2.3.4", False, "is not [allow|deny]"),
        ("allow tcp 1.2.3.4; rm -rf /", False, "is not [allow|deny]"),
        ("", False, "has no entries"),
        ("deny tcp 1.2.3.4", True, "a job may only list what it wants allowed"),
    ],
)
def test_malformed_entries_are_named(text, job, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("|", r"\|")):
        parse_rules(text, job=job)


def _ipv4(proto: int, payload: bytes, ihl: int = 5) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(payload), 0, 0, 64, proto, 0,
        bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]),
    )  # fmt: skip
    return header + b"\0" * (ihl * 4 - 20) + payload


def test_flows_are_read_from_the_first_packet():
    flow = parse_flow(_ipv4(6, struct.pack("!HH", 40000, 443) + b"\0" * 16))
    assert flow is not None
    assert (flow.proto, str(flow.destination), flow.port) == (6, "10.0.0.2", 443)
    assert flow.describe() == "10.0.0.2:443/tcp"
    with_options = parse_flow(_ipv4(17, struct.pack("!HH", 5000, 53), ihl=6))
    assert with_options is not None and with_options.port == 53
    icmp = parse_flow(_ipv4(1, b"\x08\0\0\0"))
    assert icmp is not None and icmp.port is None and icmp.describe() == "10.0.0.2/icmp"
    assert parse_flow(b"\x60" + b"\0" * 39) is None  # IPv6
    assert parse_flow(_ipv4(6, b"\0\0")) is None  # cut short before the ports


@given(st.binary(max_size=80))
def test_any_bytes_give_a_flow_or_none(data):
    flow = parse_flow(data)
    assert flow is None or flow.proto == data[9]
