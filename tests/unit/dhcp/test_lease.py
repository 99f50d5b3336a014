"""lease_from_reply: what an OFFER or ACK grants, field by field, and when it is refused.

T1/T2 follow RFC 2131 section 4.4.5 (defaults 0.5 and 0.875 of the lease, replaced when
the server's values are inconsistent); the other fields are RFC 2132's options as a job
sees them (prefix length, routers or RFC 3442 routes, DNS, names, MTU).
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from dhcp import options as opt
from dhcp.errors import MalformedMessage
from dhcp.lease import Lease, Rejected, lease_from_reply
from dhcp.message import BOOTREPLY, Message

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
MAC = bytes.fromhex("02aabbccddee")
SERVER, ROUTER, ADDR = IP("10.77.0.1"), IP("10.77.0.254"), IP("10.77.0.50")
MT = opt.MessageType


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def ack(lease: int | None = 3600, drop: tuple[int, ...] = (), yiaddr=ADDR, **extra) -> Message:
    """An ACK carrying only what RFC 2131 requires, plus ``extra`` options (``o58=...``)."""
    o = {opt.MESSAGE_TYPE: bytes([MT.ACK]), opt.SERVER_ID: SERVER.packed}
    if lease is not None:
        o[opt.LEASE_TIME] = u32(lease)
    o.update({int(k.removeprefix("o")): v for k, v in extra.items()})
    for code in drop:
        o.pop(code, None)
    return Message(op=BOOTREPLY, xid=1, chaddr=MAC, yiaddr=yiaddr, options=o)


def test_a_minimal_ack_gives_a_host_route_lease_with_nothing_else():
    lease = lease_from_reply(ack(), start=12.5)
    assert lease == Lease(
        address=ADDR,
        prefixlen=32,  # no subnet mask: the address alone, no on-link network assumed
        server_id=SERVER,
        lifetime_s=3600.0,
        t1_s=1800.0,
        t2_s=3150.0,
        start=12.5,
    )
    assert (lease.routers, lease.dns_servers, lease.routes) == ((), (), ())
    assert (lease.hostname, lease.domain, lease.mtu, lease.server_mac) == (None, None, None, b"")
    assert (lease.renew_at, lease.rebind_at, lease.expires_at) == (1812.5, 3162.5, 3612.5)


def test_every_option_a_job_uses_is_read_exactly():
    lease = lease_from_reply(
        ack(
            o1=IP("255.255.240.0").packed,
            o3=ROUTER.packed + SERVER.packed,
            o6=IP("10.77.0.2").packed + IP("10.77.0.3").packed,
            o12=b"node-7",
            o15=b"cluster.example\0",
            o26=struct.pack("!H", 9000),
        ),
        start=0.0,
    )
    assert lease.prefixlen == 20 and lease.network == NET("10.77.0.0/20")
    assert lease.routers == (ROUTER, SERVER)  # in the server's order of preference
    assert lease.dns_servers == (IP("10.77.0.2"), IP("10.77.0.3"))
    assert (lease.hostname, lease.domain) == ("node-7", "cluster.example")
    assert lease.mtu == 9000
    assert lease.routes == ()


@pytest.mark.parametrize(
    ("mask", "prefixlen"), [("0.0.0.0", 0), ("255.0.0.0", 8), ("255.255.255.255", 32)]
)
def test_the_subnet_mask_is_the_prefix_length(mask, prefixlen):
    assert lease_from_reply(ack(o1=IP(mask).packed), 0).prefixlen == prefixlen


@pytest.mark.parametrize("mask", [bytes([255, 0, 255, 0]), bytes([255, 255, 255]), b""])
def test_a_mask_that_is_no_prefix_is_rejected(mask):
    with pytest.raises(Rejected, match=r"^a non-contiguous subnet mask$"):
        lease_from_reply(ack(o1=mask), 0)


def test_classless_routes_replace_the_routers_rfc3442():
    routes = ((NET("0.0.0.0/0"), ROUTER), (NET("192.168.0.0/16"), SERVER))
    lease = lease_from_reply(ack(o3=SERVER.packed, o121=opt.encode_classless_routes(routes)), 0)
    assert lease.routes == routes and lease.routers == ()
    # an empty option 121 is no routes: the router option stands
    lease = lease_from_reply(ack(o3=SERVER.packed, o121=b""), 0)
    assert lease.routes == () and lease.routers == (SERVER,)


def test_broken_classless_routes_reject_the_whole_reply():
    with pytest.raises(Rejected, match=r"^broken classless routes$"):
        lease_from_reply(ack(o3=SERVER.packed, o121=bytes([24, 10, 1])), 0)


# -- RFC 2131 section 4.4.5: T1 and T2 -------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "t1", "t2"),
    [
        ({}, 50.0, 87.5),  # the defaults: 0.5 and 0.875 of the lease
        ({58: 30, 59: 60}, 30.0, 60.0),  # consistent values are the server's
        ({58: 30}, 30.0, 87.5),
        ({59: 60}, 50.0, 60.0),
        ({58: 99}, 50.0, 87.5),  # T1 past the default T2
        ({58: 87}, 87.0, 87.5),
        ({59: 100}, 50.0, 87.5),  # T2 at the end of the lease: no time to rebind
        ({59: 99}, 50.0, 99.0),
        ({58: 90, 59: 80}, 50.0, 80.0),  # T1 after T2: T1 back to half the lease
        ({58: 80, 59: 80}, 50.0, 80.0),  # T1 at T2: the same
        ({58: 79, 59: 80}, 79.0, 80.0),
        ({59: 40}, 20.0, 40.0),  # T2 before half the lease: T1 is half of T2
        ({59: 50}, 25.0, 50.0),
        ({58: 45, 59: 40}, 20.0, 40.0),
        ({58: 0, 59: 0}, 0.0, 0.0),  # odd, but consistent: renew at once
    ],
)
def test_t1_and_t2_are_the_servers_when_consistent_else_the_defaults(sent, t1, t2):
    o = {f"o{code}": u32(v) for code, v in sent.items()}
    lease = lease_from_reply(ack(lease=100, **o), 0)
    assert (lease.t1_s, lease.t2_s, lease.lifetime_s) == (t1, t2, 100.0)


def test_an_infinite_lease_never_expires_nor_renews_unless_told():
    lease = lease_from_reply(ack(lease=0xFFFFFFFF), 5.0)
    assert lease.lifetime_s == lease.t1_s == lease.t2_s == float("inf")
    assert lease.expires_at == float("inf")
    lease = lease_from_reply(ack(lease=0xFFFFFFFF, o58=u32(1800), o59=u32(3600)), 5.0)
    assert (lease.t1_s, lease.t2_s, lease.lifetime_s) == (1800.0, 3600.0, float("inf"))
    assert lease.renew_at == 1805.0
    lease = lease_from_reply(ack(lease=0xFFFFFFFE), 0)  # the longest finite lease
    assert lease.lifetime_s == 0xFFFFFFFE and lease.t1_s == 0xFFFFFFFE / 2


def test_the_shortest_lease_is_one_second():
    lease = lease_from_reply(ack(lease=1), 0)
    assert (lease.lifetime_s, lease.t1_s, lease.t2_s) == (1.0, 0.5, 0.875)
    with pytest.raises(Rejected, match=r"^a lease time of 0$"):
        lease_from_reply(ack(lease=0), 0)


# -- refusals: each names its rule in fixed words ------------------------------------


@pytest.mark.parametrize(
    ("reply", "rule"),
    [
        (ack(drop=(opt.MESSAGE_TYPE,)), "more than one message type"),
        (ack(o53=bytes([MT.ACK, MT.ACK])), "more than one message type"),
        (ack(drop=(opt.SERVER_ID,)), "no server identifier"),
        (ack(lease=None), "no lease time"),
        (ack(yiaddr=IP("127.0.0.1")), "an address no host can have"),
    ],
)
def test_a_reply_breaking_a_rule_is_rejected_naming_it(reply, rule):
    with pytest.raises(Rejected, match=f"^{rule}$"):
        lease_from_reply(reply, 0)


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (opt.SERVER_ID, b"\1\2\3"),
        (opt.LEASE_TIME, b"\0\0\1"),
        (opt.RENEWAL_TIME, b"\0\1"),
        (opt.REBINDING_TIME, b"\0\0\0\0\1"),
        (opt.ROUTER, b"\1\2\3\4\5"),
        (opt.DNS_SERVERS, b"\1\2"),
        (opt.INTERFACE_MTU, b"\5\xdc\0"),
    ],
)
def test_a_badly_sized_option_is_malformed_and_named(code, value):
    with pytest.raises(MalformedMessage, match=f"^option {code} must be"):
        lease_from_reply(ack(**{f"o{code}": value}), 0)
