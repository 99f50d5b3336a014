"""The node's configuration moves whole: dumped objects come back as requests on the new link
with every attribute they had, and nothing the kernel refuses in a request."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from lark_async.backends.lan import linkconfig as lc
from lark_async.backends.netlink import rtnl

RTNH_F_DEAD, RTNH_F_LINKDOWN = 0x1, 0x10


def route_body(family: int, flags: int, attrs: list[tuple[int, bytes]]) -> bytes:
    head = struct.pack("=BBBBBBBBI", family, 24, 0, 0, 100, 4, 0, 1, flags)  # proto static
    return head + lc._pack(attrs)


def attrs_of(body: bytes, offset: int) -> list[tuple[int, bytes]]:
    return list(lc._attrs(body, offset))


def test_a_route_moves_with_its_onlink_flag_metrics_and_table_only_its_link_changed():
    metrics = lc._pack([(2, struct.pack("=I", 1400)), (8, struct.pack("=I", 1360))])
    attrs = [
        (rtnl.RTA_TABLE, struct.pack("=I", 100)),
        (rtnl.RTA_DST, ipaddress.ip_address("10.99.0.0").packed),
        (rtnl.RTA_PRIORITY, struct.pack("=I", 50)),
        (rtnl.RTA_GATEWAY, ipaddress.ip_address("10.98.0.1").packed),
        (rtnl.RTA_OIF, struct.pack("=i", 3)),
        (lc.RTA_METRICS | 0x8000, metrics),
    ]
    route = lc.Route(route_body(socket.AF_INET, lc.RTNH_F_ONLINK | RTNH_F_LINKDOWN, attrs))
    moved = route.on(3, 7)
    assert moved[:8] == route.body[:8]  # family, prefix, table, protocol, scope, type
    assert struct.unpack_from("=I", moved, 8)[0] == lc.RTNH_F_ONLINK
    expected = [*attrs[:4], (rtnl.RTA_OIF, struct.pack("=i", 7)), attrs[5]]
    assert attrs_of(moved, 12) == expected
    assert route.gateway and route.links() == {3} and route.table == 100
    assert str(route) == "route 10.99.0.0/24 via 10.98.0.1 (table 100)"
    msg = lc.add_route(route, 3, 7, "lark")
    assert msg.flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_APPEND  # alternatives keep their order


def test_an_expiring_ipv6_route_is_sent_with_its_remaining_lifetime():
    cache = struct.pack("=IIiIIIII", 0, 0, 300 * lc._CLOCK_TICKS, 0, 0, 0, 0, 0)
    attrs = [(rtnl.RTA_OIF, struct.pack("=i", 3)), (lc.RTA_CACHEINFO, cache)]
    moved = lc.Route(route_body(socket.AF_INET6, 0, attrs)).on(3, 7)
    assert attrs_of(moved, 12) == [
        (rtnl.RTA_OIF, struct.pack("=i", 7)),
        (lc.RTA_EXPIRES, struct.pack("=I", 300)),
    ]


def test_a_multipath_route_moves_only_the_nexthops_on_the_device():
    hop = lambda index, flags: struct.pack("=HBBi", 8, flags, 0, index)  # noqa: E731
    attrs = [(lc.RTA_MULTIPATH, hop(3, lc.RTNH_F_ONLINK | RTNH_F_DEAD) + hop(5, 0))]
    route = lc.Route(route_body(socket.AF_INET, 0, attrs))
    assert route.links() == {3, 5} and route.gateway
    assert attrs_of(route.on(3, 7), 12) == [
        (lc.RTA_MULTIPATH, hop(7, lc.RTNH_F_ONLINK) + hop(5, 0))
    ]


def address_body(family: int, address: str, prefix: int, flags: int, label: str = "") -> bytes:
    raw = ipaddress.ip_address(address).packed
    attrs = [(lc.IFA_ADDRESS, raw), (lc.IFA_LOCAL, raw)] if family == socket.AF_INET else []
    attrs += [(lc.IFA_ADDRESS, raw)] if family == socket.AF_INET6 else []
    if label:
        attrs.append((lc.IFA_LABEL, label.encode() + b"\0"))
    attrs.append((lc.IFA_CACHEINFO, struct.pack("=IIII", 1800, 3600, 0, 0)))
    attrs.append((lc.IFA_FLAGS, struct.pack("=I", flags)))
    return struct.pack("=BBBBi", family, prefix, flags & 0xFF, 0, 3) + lc._pack(attrs)


def test_a_secondary_keeps_its_label_renamed_and_its_lifetimes():
    a = lc.Address(
        address_body(socket.AF_INET, "10.77.0.211", 24, lc.IFA_F_SECONDARY, "uplink:sec")
    )
    assert str(a) == "10.77.0.211/24" and a.index == 3
    moved = a.on(7, "uplink", "lark")
    family, prefix, flags, _scope, index = struct.unpack_from("=BBBBi", moved)
    assert (family, prefix, flags, index) == (socket.AF_INET, 24, 0, 7)  # the kernel decides
    found = dict(lc._attrs(moved, 8))
    assert found[lc.IFA_LABEL] == b"lark:sec\0"
    assert found[lc.IFA_CACHEINFO][:8] == struct.pack("=II", 1800, 3600)
    assert lc.del_address(a, 3, "", "", "uplink").body == a.on(3)


@pytest.mark.parametrize(("flags", "requests"), [(0, 2), (lc.IFA_F_NODAD, 1)])
def test_an_ipv6_address_moves_without_dad_then_gets_its_own_flags(flags, requests):
    noprefixroute = 0x200
    a = lc.Address(address_body(socket.AF_INET6, "2001:db8:78::11", 64, flags | noprefixroute))
    sent = lc.add_address(a, 7, "uplink", "lark", "lark")
    assert len(sent) == requests
    assert sent[0].kind == rtnl.RTM_NEWADDR  # (replacing one SLAAC made meanwhile)
    assert sent[0].flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE
    assert lc.Address(sent[0].body).flags == lc.IFA_F_NODAD | flags | noprefixroute
    if requests == 2:
        assert sent[1].flags == rtnl.NLM_F_REPLACE
        assert lc.Address(sent[1].body).flags == noprefixroute


def test_a_rule_naming_the_device_names_the_bridge_without_detached_flags():
    attrs = [(lc.FRA_PRIORITY, struct.pack("=I", 101)), (lc.FRA_IIFNAME, b"uplink\0")]
    head = struct.pack(
        "=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 100, 0, 0, 1, lc.FIB_RULE_IIF_DETACHED
    )
    rule = lc.Rule(head + lc._pack(attrs))
    assert rule.names("uplink") and not rule.names("lark") and rule.key == (socket.AF_INET, 101)
    moved = lc.Rule(rule.on("uplink", "lark"))
    assert moved.names("lark") and struct.unpack_from("=I", moved.body, 8)[0] == 0
