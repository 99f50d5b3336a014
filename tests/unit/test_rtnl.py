"""The rtnetlink encoders (pure bytes); the Channel needs root and is not exercised here."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from lark_async.backends.netlink import NetlinkError, rtnl
from lark_async.decide.names import IFNAMSIZ

A = ipaddress.IPv4Address


def walk(data: bytes) -> list[tuple[int, bytes]]:
    """Split a netlink attribute stream into (type, payload), checking lengths and padding."""
    attrs, offset = [], 0
    while offset < len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        assert length >= 4
        assert offset + length <= len(data)
        attrs.append((kind, data[offset + 4 : offset + length]))
        padded = length + (-length % 4)
        assert data[offset + length : offset + padded] == b"\0" * (padded - length)
        offset += padded
    assert offset == len(data)
    return attrs


def ifinfo(data: bytes) -> tuple[int, int, int, int, int]:
    family, _pad, kind, index, flags, change = struct.unpack_from("=BBHiII", data)
    return family, kind, index, flags, change


MESSAGES = [
    rtnl.new_veth("e_s1-123_0", "i_s1-123_0", 7),
    rtnl.set_up(5, "i_x"),
    rtnl.del_link("e_x"),
    rtnl.new_peer_address(5, A("192.168.181.3"), A("192.168.181.2"), "i_x"),
    rtnl.new_default_route(A("192.168.181.2"), 5),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.what)
def test_every_body_is_aligned_to_4_bytes(msg):
    assert len(msg.body) % 4 == 0


def test_new_veth_nests_the_peer_inside_linkinfo():
    msg = rtnl.new_veth("e_s1-123_0", "i_s1-123_0", 7)
    assert msg.kind == rtnl.RTM_NEWLINK
    assert msg.flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert msg.what == "create veth e_s1-123_0/i_s1-123_0"
    assert ifinfo(msg.body) == (socket.AF_UNSPEC, 0, 0, rtnl.IFF_UP, rtnl.IFF_UP)

    top = walk(msg.body[16:])
    assert [kind for kind, _ in top] == [rtnl.IFLA_IFNAME, rtnl.IFLA_LINKINFO]
    assert top[0][1] == b"e_s1-123_0\0"

    linkinfo = walk(top[1][1])
    assert linkinfo[0] == (rtnl.IFLA_INFO_KIND, b"veth\0")
    assert linkinfo[1][0] == rtnl.IFLA_INFO_DATA

    (peer,) = walk(linkinfo[1][1])
    assert peer[0] == rtnl.VETH_INFO_PEER
    assert ifinfo(peer[1]) == (socket.AF_UNSPEC, 0, 0, 0, 0)  # the peer is not created up
    assert walk(peer[1][16:]) == [
        (rtnl.IFLA_IFNAME, b"i_s1-123_0\0"),
        (rtnl.IFLA_NET_NS_FD, struct.pack("=I", 7)),
    ]


def test_a_15_character_interface_name_fits_with_its_nul():
    msg = rtnl.del_link("e_" + "a" * 13)
    ((kind, payload),) = walk(msg.body[16:])
    assert kind == rtnl.IFLA_IFNAME
    assert len(payload) == IFNAMSIZ == 16


def test_set_up_sets_and_changes_only_iff_up():
    msg = rtnl.set_up(42, "i_x")
    assert (msg.kind, msg.flags, msg.what) == (rtnl.RTM_NEWLINK, 0, "bring up i_x")
    assert msg.body == struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 42, 1, 1)


def test_del_link_by_name():
    msg = rtnl.del_link("e_x")
    assert (msg.kind, msg.flags, msg.what) == (rtnl.RTM_DELLINK, 0, "delete link e_x")
    assert ifinfo(msg.body) == (socket.AF_UNSPEC, 0, 0, 0, 0)
    assert walk(msg.body[16:]) == [(rtnl.IFLA_IFNAME, b"e_x\0")]


def test_new_peer_address_is_a_32_with_a_peer():
    msg = rtnl.new_peer_address(5, A("192.168.181.3"), A("192.168.181.2"), "i_x")
    assert msg.kind == rtnl.RTM_NEWADDR
    assert msg.flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert msg.what == "add address 192.168.181.3 to i_x"
    assert struct.unpack_from("=BBBBi", msg.body) == (socket.AF_INET, 32, 0, 0, 5)
    assert walk(msg.body[8:]) == [
        (rtnl.IFA_LOCAL, bytes([192, 168, 181, 3])),
        (rtnl.IFA_ADDRESS, bytes([192, 168, 181, 2])),
    ]


def test_new_default_route_goes_via_the_gateway_in_the_main_table():
    msg = rtnl.new_default_route(A("192.168.181.2"), 5)
    assert msg.kind == rtnl.RTM_NEWROUTE
    assert msg.flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert msg.what == "add default route via 192.168.181.2"
    family, dst_len, _src_len, _tos, table, proto, scope, kind, _flags = struct.unpack_from(
        "=BBBBBBBBI", msg.body
    )
    assert (family, dst_len, table, proto, scope, kind) == (
        socket.AF_INET,
        0,
        rtnl.RT_TABLE_MAIN,
        rtnl.RTPROT_BOOT,
        0,
        rtnl.RTN_UNICAST,
    )
    assert walk(msg.body[12:]) == [
        (rtnl.RTA_GATEWAY, bytes([192, 168, 181, 2])),
        (rtnl.RTA_OIF, struct.pack("=i", 5)),
    ]


def test_request_error_is_an_os_error_naming_the_request():
    error = NetlinkError(17, "create veth e_x/i_x")
    assert isinstance(error, OSError)
    assert error.errno == 17
    assert error.strerror == "File exists"
    assert error.what == "create veth e_x/i_x"


# -- the same requests encoded by pyroute2 ----------------------------------------------------


def pyroute2_body(msg) -> bytes:
    msg.encode()
    return bytes(msg.data)[16:]  # without the nlmsghdr, which the Channel adds


def test_new_veth_matches_pyroute2():
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["family"], msg["index"], msg["flags"], msg["change"] = 0, 0, 1, 1
    msg["attrs"] = [
        ("IFLA_IFNAME", "e_s1-123_0"),
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "veth"),
                    (
                        "IFLA_INFO_DATA",
                        {
                            "attrs": [
                                (
                                    "VETH_INFO_PEER",
                                    {
                                        "attrs": [
                                            ("IFLA_IFNAME", "i_s1-123_0"),
                                            ("IFLA_NET_NS_FD", 7),
                                        ]
                                    },
                                )
                            ]
                        },
                    ),
                ]
            },
        ),
    ]
    assert rtnl.new_veth("e_s1-123_0", "i_s1-123_0", 7).body == pyroute2_body(msg)


def test_set_up_and_del_link_match_pyroute2():
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    up = ifinfmsg()
    up["index"], up["flags"], up["change"] = 9, 1, 1
    assert rtnl.set_up(9, "x").body == pyroute2_body(up)

    delete = ifinfmsg()
    delete["attrs"] = [("IFLA_IFNAME", "e_x")]
    assert rtnl.del_link("e_x").body == pyroute2_body(delete)


def test_new_peer_address_matches_pyroute2():
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, 32, 5
    msg["attrs"] = [("IFA_LOCAL", "192.168.181.3"), ("IFA_ADDRESS", "192.168.181.2")]
    ours = rtnl.new_peer_address(5, A("192.168.181.3"), A("192.168.181.2"), "i_x")
    assert ours.body == pyroute2_body(msg)


def test_new_default_route_matches_pyroute2():
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    msg = rtmsg()
    msg["family"], msg["table"], msg["proto"], msg["scope"], msg["type"] = (
        socket.AF_INET,
        254,
        3,
        0,
        1,
    )
    msg["attrs"] = [("RTA_GATEWAY", "192.168.181.2"), ("RTA_OIF", 5)]
    assert rtnl.new_default_route(A("192.168.181.2"), 5).body == pyroute2_body(msg)


def test_lan_address_matches_pyroute2():
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, 24, 7
    msg["attrs"] = [
        ("IFA_LOCAL", "10.77.0.120"),
        ("IFA_ADDRESS", "10.77.0.120"),
        ("IFA_BROADCAST", "10.77.0.255"),
    ]
    iface = ipaddress.IPv4Interface("10.77.0.120/24")
    ours = rtnl.address(rtnl.RTM_NEWADDR, 7, iface, "i_x")
    assert ours.body == pyroute2_body(msg)
    assert ours.what == "add address 10.77.0.120/24 on i_x"
    gone = rtnl.address(rtnl.RTM_DELADDR, 7, iface, "i_x")
    assert (gone.kind, gone.flags, gone.body) == (rtnl.RTM_DELADDR, 0, ours.body)


def test_routes_from_a_lease_match_pyroute2():
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    msg = rtmsg()
    msg["family"], msg["dst_len"], msg["table"], msg["proto"], msg["scope"], msg["type"] = (
        socket.AF_INET,
        16,
        254,
        16,
        0,
        1,
    )
    msg["attrs"] = [("RTA_DST", "10.9.0.0"), ("RTA_GATEWAY", "10.77.0.1"), ("RTA_OIF", 7)]
    ours = rtnl.route(rtnl.RTM_NEWROUTE, ipaddress.IPv4Network("10.9.0.0/16"), A("10.77.0.1"), 7)
    assert ours.body == pyroute2_body(msg)
    assert ours.what == "add route to 10.9.0.0/16 via 10.77.0.1"
    on_link = rtnl.route(rtnl.RTM_DELROUTE, ipaddress.IPv4Network("10.8.0.0/16"), None, 7)
    assert on_link.what == "remove route to 10.8.0.0/16" and on_link.flags == 0
    assert struct.unpack_from("=BBBBBBBBI", on_link.body)[6] == rtnl.RT_SCOPE_LINK


def test_a_job_port_is_pinned_with_one_byte_bridge_port_options():
    msg = rtnl.set_port_flags(9, {rtnl.IFLA_BRPORT_LEARNING: 0, rtnl.IFLA_BRPORT_GUARD: 1}, "e_x")
    assert msg.kind == rtnl.RTM_NEWLINK and msg.flags == 0
    assert ifinfo(msg.body)[2] == 9
    ((kind, linkinfo),) = walk(msg.body[16:])
    assert kind == rtnl.IFLA_LINKINFO
    info = dict(walk(linkinfo))
    assert info[rtnl.IFLA_INFO_SLAVE_KIND] == b"bridge\0"
    assert walk(info[rtnl.IFLA_INFO_SLAVE_DATA]) == [(8, b"\0"), (5, b"\1")]


@pytest.mark.parametrize(("vid", "sticky"), [(None, True), (10, False)])
def test_the_jobs_mac_is_a_static_entry_never_a_permanent_one(vid, sticky):
    """Permanent (NUD_PERMANENT) would make the bridge deliver the job's frames to itself."""
    mac = bytes.fromhex("02aabbccddee")
    msg = rtnl.static_fdb(9, mac, vid, sticky, "e_x")
    assert msg.kind == rtnl.RTM_NEWNEIGH
    assert msg.flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE  # replaces a learnt entry
    family, _, _, index, state, flags, _ = struct.unpack_from("=BBHiHBB", msg.body)
    assert (family, index, state) == (socket.AF_BRIDGE, 9, rtnl.NUD_NOARP)
    assert flags == rtnl.NTF_MASTER | (rtnl.NTF_STICKY if sticky else 0)
    attrs = dict(walk(msg.body[12:]))
    assert attrs[rtnl.NDA_LLADDR] == mac
    assert attrs.get(rtnl.NDA_VLAN) == (None if vid is None else struct.pack("=H", vid))


def test_static_fdb_matches_pyroute2():
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    msg = ndmsg()
    msg["family"], msg["ifindex"], msg["state"] = socket.AF_BRIDGE, 9, rtnl.NUD_NOARP
    msg["flags"] = rtnl.NTF_MASTER | rtnl.NTF_STICKY
    msg["attrs"] = [("NDA_LLADDR", "02:aa:bb:cc:dd:ee")]
    msg.encode()
    ours = rtnl.static_fdb(9, bytes.fromhex("02aabbccddee"), None, True, "e_x")
    assert ours.body == bytes(msg.data[16:])


def test_a_leased_ipv6_address_is_a_128_with_the_leases_lifetimes_and_optimistic_dad():
    addr = ipaddress.IPv6Address("fd77::100")
    put = rtnl.leased_address6(rtnl.RTM_NEWADDR, 7, addr, 50.9, 60.2, "i_x")
    assert put.flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE  # (a renewal replaces times)
    assert struct.unpack_from("=BBBBi", put.body) == (socket.AF_INET6, 128, 0, 0, 7)
    attrs = dict(walk(put.body[8:]))
    assert attrs[rtnl.IFA_LOCAL] == addr.packed
    flags = struct.unpack("=I", attrs[rtnl.IFA_FLAGS])[0]
    assert flags == rtnl.IFA_F_OPTIMISTIC | rtnl.IFA_F_NOPREFIXROUTE
    assert struct.unpack("=IIII", attrs[rtnl.IFA_CACHEINFO]) == (50, 60, 0, 0)
    assert put.what == "add address fd77::100 to i_x"
    # preferred never beyond valid; infinity is the kernel's; a lease run out is 0, not negative
    forever = rtnl.leased_address6(rtnl.RTM_NEWADDR, 7, addr, 90, float("inf"), "i_x")
    assert struct.unpack("=IIII", dict(walk(forever.body[8:]))[rtnl.IFA_CACHEINFO])[:2] == (
        90,
        0xFFFFFFFF,
    )
    late = rtnl.leased_address6(rtnl.RTM_NEWADDR, 7, addr, 80, -3, "i_x")
    assert struct.unpack("=IIII", dict(walk(late.body[8:]))[rtnl.IFA_CACHEINFO])[:2] == (0, 0)
    gone = rtnl.leased_address6(rtnl.RTM_DELADDR, 7, addr, 0, 0, "i_x")
    assert (gone.kind, gone.flags, walk(gone.body[8:])) == (
        rtnl.RTM_DELADDR,
        0,
        [(rtnl.IFA_LOCAL, addr.packed)],
    )


def link_body(inet6_flags: bytes | None) -> bytes:
    inet6 = b"" if inet6_flags is None else rtnl.attr(rtnl.IFLA_INET6_FLAGS, inet6_flags)
    spec = rtnl.attr(rtnl.IFLA_AF_SPEC, rtnl.attr(socket.AF_INET6, inet6))
    return struct.pack("=BxHiII", 0, 1, 4, 0, 0) + spec


def test_the_last_router_advertisements_managed_flag_is_read_from_the_link():
    assert rtnl.parse_link(link_body(struct.pack("=I", 0x80000040))).ra_managed
    assert not rtnl.parse_link(link_body(struct.pack("=I", 0x80))).ra_managed  # O only
    assert not rtnl.parse_link(link_body(None)).ra_managed
    assert not rtnl.parse_link(link_body(b"\x40\x00")).ra_managed  # (cut short: ignored)
