"""backends/lan/ndopt.py: the RDNSS and DNSSL options (RFC 8106) of the RAs a bridged job's
kernel hands to userspace as RTM_NEWNDUSEROPT, parsed as hostile, and the book that keeps
them for their lifetimes."""

from __future__ import annotations

import ipaddress
import math
import socket
import struct

import pytest

from lark_async.backends.lan import ndopt
from lark_async.backends.lan.ndopt import RaDns, RaDnsBook, decode_names, parse_useropt
from lark_async.backends.netlink.core import attr

A = ipaddress.IPv6Address
ROUTER = A("fe80::d4a0:bff:fe96:b6d9")
INF = math.inf

# Two messages as Linux 6.18 sent them for one RA (radvd-like: RDNSS 2001:db8::53 and
# fe80::53 for 600 s, DNSSL lan.example for ever) received on link 2: the bodies after the
# netlink header, recorded from a veth pair in a throwaway namespace.
KERNEL_RDNSS = bytes.fromhex(
    "0a002800020000008600000000000000"  # nduseroptmsg: AF_INET6, 40 octets, link 2, RA
    "1905000000000258"  # RDNSS, 5 x 8 octets, lifetime 600
    "20010db8000000000000000000000053fe800000000000000000000000000053"
    "14000100fe80000000000000d4a00bfffe96b6d9"  # NDUSEROPT_SRCADDR
)
KERNEL_DNSSL = bytes.fromhex(
    "0a001800020000008600000000000000"
    "1f030000ffffffff"  # DNSSL, 3 x 8 octets, infinity
    "036c616e076578616d706c65000000"  # lan.example, padded
    "0014000100fe80000000000000d4a00bfffe96b6d9"
)


def option(kind: int, lifetime: int, data: bytes, units: int | None = None) -> bytes:
    """One ND option as RFC 8106 lays it out: type, length in 8 octets, 2 reserved octets,
    the lifetime, then ``data`` padded with zeros to a multiple of 8."""
    data += b"\0" * (-(len(data) + 8) % 8)
    size = (len(data) + 8) // 8 if units is None else units
    return struct.pack("!BBHI", kind, size, 0, lifetime) + data


def rdnss(*servers: str, lifetime: int = 600, units: int | None = None) -> bytes:
    return option(ndopt.ND_OPT_RDNSS, lifetime, b"".join(A(s).packed for s in servers), units)


def names(*domains: str) -> bytes:
    return b"".join(
        b"".join(bytes([len(label)]) + label.encode() for label in d.split(".")) + b"\0"
        for d in domains
    )


def dnssl(*domains: str, lifetime: int = 600, raw: bytes | None = None) -> bytes:
    return option(ndopt.ND_OPT_DNSSL, lifetime, names(*domains) if raw is None else raw)


def message(
    *options: bytes,
    index: int = 2,
    family: int = socket.AF_INET6,
    icmp: int = 134,
    code: int = 0,
    size: int | None = None,
    router: bytes | None = ROUTER.packed,
) -> bytes:
    opts = b"".join(options)
    head = struct.pack(
        "=BBHiBBHI", family, 0, len(opts) if size is None else size, index, icmp, code, 0, 0
    )
    return head + opts + (attr(ndopt.NDUSEROPT_SRCADDR, router) if router is not None else b"")


# --- the kernel's side ---------------------------------------------------------------------


def test_the_constants_are_the_kernels():
    assert ndopt.RTM_NEWNDUSEROPT == 68
    assert ndopt.RTNLGRP_ND_USEROPT == 20
    assert ndopt.RTMGRP_ND_USEROPT == 0x80000
    assert (ndopt.SOL_NETLINK, ndopt.NETLINK_ADD_MEMBERSHIP) == (270, 1)
    assert ndopt.NDUSEROPT_SRCADDR == 1
    assert (ndopt.ND_ROUTER_ADVERT, ndopt.ND_OPT_RDNSS, ndopt.ND_OPT_DNSSL) == (134, 25, 31)
    assert ndopt.INFINITY == 0xFFFFFFFF
    assert (ndopt.MAX_SERVERS, ndopt.MAX_DOMAINS, ndopt.MAX_HEARD) == (3, 6, 16)
    assert (ndopt.MAX_LABEL, ndopt.MAX_NAME) == (63, 255)


def test_a_netlink_socket_joins_the_group_either_way():
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.bind((0, ndopt.RTMGRP_ND_USEROPT))
        assert sock.getsockname()[1] == 1 << 19
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.bind((0, 0))  # (a bind after the setsockopt would leave the group again)
        sock.setsockopt(ndopt.SOL_NETLINK, ndopt.NETLINK_ADD_MEMBERSHIP, ndopt.RTNLGRP_ND_USEROPT)
        assert sock.getsockname()[1] == 1 << 19


def test_the_kernels_rdnss_message():
    assert parse_useropt(KERNEL_RDNSS, 2) == RaDns(
        ROUTER, ((A("2001:db8::53"), 600.0), (A("fe80::53"), 600.0))
    )


def test_the_kernels_dnssl_message():
    assert parse_useropt(KERNEL_DNSSL, 2) == RaDns(ROUTER, (), (("lan.example", INF),))


def test_the_hand_built_messages_are_the_kernels():
    assert message(rdnss("2001:db8::53", "fe80::53")) == KERNEL_RDNSS
    assert message(dnssl("lan.example", lifetime=ndopt.INFINITY)) == KERNEL_DNSSL


# --- whose message ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [KERNEL_RDNSS, KERNEL_DNSSL])
def test_another_links_message_is_not_the_jobs(body):
    assert parse_useropt(body, 3) is None
    assert parse_useropt(body, 0) is None
    assert parse_useropt(body, -1) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("family", socket.AF_INET),
        ("family", 0),
        ("icmp", 133),  # a router solicitation
        ("icmp", 137),  # a redirect
        ("icmp", 135),
        ("code", 1),
        ("code", 255),
    ],
)
def test_another_family_or_icmp_message_than_an_ra_is_not_read(field, value):
    assert parse_useropt(message(rdnss("2001:db8::53"), **{field: value}), 2) is None
    assert parse_useropt(message(rdnss("2001:db8::53")), 2) is not None


@pytest.mark.parametrize("body", [KERNEL_RDNSS, KERNEL_DNSSL])
def test_a_message_cut_anywhere_in_its_options_says_nothing(body):
    end = 16 + struct.unpack_from("=H", body, 2)[0]
    for cut in range(end):
        assert parse_useropt(body[:cut], 2) is None, cut


def test_a_message_cut_in_its_router_attribute_keeps_its_options_without_the_router():
    whole = parse_useropt(KERNEL_RDNSS, 2)
    assert whole is not None
    for cut in range(56, len(KERNEL_RDNSS)):
        assert parse_useropt(KERNEL_RDNSS[:cut], 2) == RaDns(None, whole.servers), cut


def test_trailing_bytes_change_nothing():
    assert parse_useropt(KERNEL_RDNSS + b"\0" * 8, 2) == parse_useropt(KERNEL_RDNSS, 2)
    assert parse_useropt(KERNEL_DNSSL + b"junk", 2) == parse_useropt(KERNEL_DNSSL, 2)


@pytest.mark.parametrize(
    "router", [None, b"", b"\xfe\x80", ROUTER.packed[:15], ROUTER.packed + b"\0"]
)
def test_no_router_address_or_a_wrong_sized_one_is_no_router(router):
    assert parse_useropt(message(rdnss("2001:db8::53"), router=router), 2) == RaDns(
        None, ((A("2001:db8::53"), 600.0),)
    )


def test_the_router_is_the_attributes_after_the_options():
    other = A("fe80::1")
    body = message(rdnss("2001:db8::53"), router=other.packed)
    assert parse_useropt(body, 2) == RaDns(other, ((A("2001:db8::53"), 600.0),))


@pytest.mark.parametrize("size", [1, 7, 12, 23, 25, 39, 41, 200, 0xFFFF])
def test_option_lengths_that_do_not_add_up_say_nothing(size):
    assert parse_useropt(message(rdnss("2001:db8::53", "2001:db8::54"), size=size), 2) is None


def test_options_beyond_the_stated_length_are_not_read():
    body = message(rdnss("2001:db8::53"), dnssl("lan.example"), size=24)
    assert parse_useropt(body, 2) == RaDns(None, ((A("2001:db8::53"), 600.0),))


def test_a_message_of_no_option_says_nothing():
    assert parse_useropt(message(), 2) is None


def test_an_option_of_length_zero_discards_the_whole_message():
    """RFC 4861 section 4.6: a node silently discards an ND packet with an option of length 0
    (a loop over the options would otherwise never end)."""
    zero = struct.pack("!BBHI", ndopt.ND_OPT_RDNSS, 0, 0, 600) + A("2001:db8::1").packed
    assert parse_useropt(message(zero), 2) is None
    assert parse_useropt(message(rdnss("2001:db8::53"), zero), 2) is None
    assert parse_useropt(message(dnssl("lan.example"), option(3, 0, b"", units=0)), 2) is None


def test_an_option_running_past_the_others_says_nothing():
    assert parse_useropt(message(rdnss("2001:db8::53", units=5)), 2) is None
    assert parse_useropt(message(rdnss("2001:db8::53"), dnssl("a.example")[:16]), 2) is None


def test_other_options_are_passed_over():
    prefix = option(3, 0, b"\0" * 24)  # a prefix information option, 4 x 8 octets
    captive = option(37, 0, b"https://portal.example/")
    body = message(prefix, rdnss("2001:db8::53"), captive, dnssl("lan.example"))
    assert parse_useropt(body, 2) == RaDns(
        ROUTER, ((A("2001:db8::53"), 600.0),), (("lan.example", 600.0),)
    )
    assert parse_useropt(message(prefix, captive), 2) is None


def test_several_options_in_one_message_add_up_in_order():
    body = message(
        rdnss("2001:db8::1"),
        dnssl("a.example"),
        rdnss("2001:db8::2", "2001:db8::3", lifetime=0),
        dnssl("b.example", lifetime=ndopt.INFINITY),
    )
    assert parse_useropt(body, 2) == RaDns(
        ROUTER,
        ((A("2001:db8::1"), 600.0), (A("2001:db8::2"), 0.0), (A("2001:db8::3"), 0.0)),
        (("a.example", 600.0), ("b.example", INF)),
    )


# --- RDNSS -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "seconds"),
    [(0, 0.0), (1, 1.0), (600, 600.0), (0xFFFFFFFE, 4294967294.0), (0xFFFFFFFF, INF)],
)
def test_lifetimes_are_seconds_all_ones_for_ever(lifetime, seconds):
    heard = parse_useropt(message(rdnss("2001:db8::53", lifetime=lifetime)), 2)
    assert heard is not None
    assert heard.servers == ((A("2001:db8::53"), seconds),)
    assert type(heard.servers[0][1]) is float


@pytest.mark.parametrize("units", [1, 2, 4, 6])
def test_an_rdnss_of_an_even_length_or_under_three_is_dropped_alone(units):
    """RFC 8106 section 5.3.1: a length of at least 3 with (length - 1) % 2 == 0."""
    servers = b"".join(A(f"2001:db8::{i}").packed for i in range(1, 4))[: units * 8 - 8]
    bad = option(ndopt.ND_OPT_RDNSS, 600, servers, units)
    assert len(bad) == units * 8
    assert parse_useropt(message(bad), 2) is None
    assert parse_useropt(message(bad, dnssl("lan.example")), 2) == RaDns(
        ROUTER, (), (("lan.example", 600.0),)
    )


@pytest.mark.parametrize("count", [1, 2, 3])
def test_an_rdnss_holds_one_address_per_two_units(count):
    servers = [f"2001:db8::{i}" for i in range(1, count + 1)]
    heard = parse_useropt(message(rdnss(*servers)), 2)
    assert heard is not None
    assert [a for a, _ in heard.servers] == [A(s) for s in servers]


@pytest.mark.parametrize(
    "server", ["::", "::1", "ff02::1", "ff05::1:3", "::ffff:10.0.0.1", "::ffff:0.0.0.0"]
)
def test_servers_no_one_on_the_link_can_be_are_dropped(server):
    heard = parse_useropt(message(rdnss(server, "2001:db8::53")), 2)
    assert heard == RaDns(ROUTER, ((A("2001:db8::53"), 600.0),))
    assert parse_useropt(message(rdnss(server)), 2) is None


@pytest.mark.parametrize("server", ["fe80::1", "fd00::53", "2001:db8::53", "fec0::1", "64:ff9b::1"])
def test_link_local_unique_local_and_global_servers_are_kept(server):
    assert parse_useropt(message(rdnss(server)), 2) == RaDns(ROUTER, ((A(server), 600.0),))


def test_a_huge_rdnss_gives_its_first_sixteen():
    servers = [f"2001:db8::{i:x}" for i in range(1, 128)]
    body = message(rdnss(*servers))
    assert body[17] == 255  # the largest length there is
    heard = parse_useropt(body, 2)
    assert heard is not None
    assert [a for a, _ in heard.servers] == [A(s) for s in servers[:16]]


def test_many_options_give_sixteen_servers_and_sixteen_domains_in_all():
    body = message(
        *(rdnss(f"2001:db8::{i:x}") for i in range(1, 40)),
        *(dnssl(f"d{i}.example") for i in range(1, 40)),
    )
    heard = parse_useropt(body, 2)
    assert heard is not None
    assert [a for a, _ in heard.servers] == [A(f"2001:db8::{i:x}") for i in range(1, 17)]
    assert [d for d, _ in heard.domains] == [f"d{i}.example" for i in range(1, 17)]


# --- DNSSL -----------------------------------------------------------------------------------


def test_a_dnssl_gives_its_names_in_order_as_they_are_spelt():
    heard = parse_useropt(message(dnssl("Lan.Example", "b.example", "x", lifetime=90)), 2)
    assert heard == RaDns(ROUTER, (), (("Lan.Example", 90.0), ("b.example", 90.0), ("x", 90.0)))


def test_zero_octets_between_names_are_passed_over():
    raw = b"\0\0" + names("a.example") + b"\0\0\0" + names("b.example") + b"\0" * 5
    heard = parse_useropt(message(dnssl(raw=raw)), 2)
    assert heard == RaDns(ROUTER, (), (("a.example", 600.0), ("b.example", 600.0)))


def test_a_dnssl_of_padding_only_says_nothing():
    assert parse_useropt(message(dnssl(raw=b"")), 2) is None
    assert parse_useropt(message(dnssl(raw=b"\0" * 16)), 2) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc0\x0c",  # a compression pointer
        b"\x01a\xc0\x0c",  # ... after a label
        b"\x40" + b"a" * 64 + b"\0",  # a 64-octet label
        b"\x3fabc",  # a label running past the option
        b"\x03lan\x07example\x03abc",  # 16 octets, no final zero: runs past the option
        b"\x07example" + b"\x01a" * 4,
        b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\0",  # 257 octets
        b"\x80",
        b"\xff",
    ],
)
def test_a_dnssl_with_a_broken_encoding_is_dropped_whole(raw):
    for before in (b"", names("goods.examples")):  # (16 octets: no padding after raw)
        body = message(dnssl(raw=before + raw), rdnss("2001:db8::53"))
        assert parse_useropt(body, 2) == RaDns(ROUTER, ((A("2001:db8::53"), 600.0),)), before


def test_a_name_of_255_octets_with_63_octet_labels_is_read():
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(names(longest)) == 255
    heard = parse_useropt(message(dnssl(longest)), 2)
    assert heard == RaDns(ROUTER, (), ((longest, 600.0),))
    one_more = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])
    assert parse_useropt(message(dnssl(one_more)), 2) is None


@pytest.mark.parametrize(
    "labels",
    [
        [b"a_b", b"example"],
        [b"-x", b"example"],
        [b"x-", b"example"],
        [b"a.b", b"example"],  # a dot in a label: not two labels
        [b"a b"],
        [b"a\nb"],
        [b"evil\nnameserver 6.6.6.6"],
        [b"a\x00b"],
        [b"\xc3\xa9t\xc3\xa9"],
        [b"a#b"],
        [b"a;b"],
        [b"a/b"],
    ],
)
def test_names_that_are_no_hostnames_are_dropped_the_others_kept(labels):
    raw = b"".join(bytes([len(x)]) + x for x in labels) + b"\0"
    body = message(dnssl(raw=names("a.example") + raw + names("b.example")))
    assert parse_useropt(body, 2) == RaDns(ROUTER, (), (("a.example", 600.0), ("b.example", 600.0)))
    assert parse_useropt(message(dnssl(raw=raw)), 2) is None


def test_decode_names_reads_labels_and_refuses_broken_encodings():
    assert decode_names(b"") == []
    assert decode_names(b"\0\0") == []
    assert decode_names(b"\x01a\x02bc\0\x01d\0\0") == [("a", "bc"), ("d",)]
    assert decode_names(b"\x03a.b\0") == [("a.b",)]
    assert decode_names(b"\x02\xc3\xa9\0") == [("\xc3\xa9",)]
    assert decode_names(b"\x3f" + b"x" * 63 + b"\0") == [("x" * 63,)]
    assert decode_names(b"\x40" + b"x" * 64 + b"\0") is None
    assert decode_names(b"\x01a") is None
    assert decode_names(b"\x02a") is None
    assert decode_names(b"\x02ab") is None
    assert decode_names(b"\x01a\0\x01") is None


# --- the book --------------------------------------------------------------------------------


def ra(*servers: tuple[str, float], domains: tuple[tuple[str, float], ...] = ()) -> RaDns:
    return RaDns(ROUTER, tuple((A(s), life) for s, life in servers), domains)


def test_an_empty_book_has_nothing_and_nothing_expires():
    book = RaDnsBook()
    assert book.current(0.0) == ((), ())
    assert book.next_expiry(0.0) is None


def test_the_book_keeps_what_it_heard_until_it_expires():
    book = RaDnsBook()
    assert book.update(ra(("2001:db8::1", 600.0), domains=(("lan.example", 300.0),)), 100.0)
    assert book.current(100.0) == ((A("2001:db8::1"),), ("lan.example",))
    assert book.next_expiry(100.0) == 400.0
    assert book.current(399.9) == ((A("2001:db8::1"),), ("lan.example",))
    assert book.current(400.0) == ((A("2001:db8::1"),), ())
    assert book.next_expiry(400.0) == 700.0
    assert book.current(699.9) == ((A("2001:db8::1"),), ())
    assert book.current(700.0) == ((), ())
    assert book.next_expiry(700.0) is None


def test_an_expired_entry_is_gone_for_good():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 10.0)), 0.0)
    assert book.current(10.0) == ((), ())
    assert book.current(5.0) == ((), ())  # (a clock read out of order brings nothing back)


def test_infinity_never_expires():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", INF), domains=(("lan.example", INF),)), 0.0)
    assert book.current(1e15) == ((A("2001:db8::1"),), ("lan.example",))
    assert book.next_expiry(1e15) is None


def test_next_expiry_is_the_soonest_of_servers_and_domains():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 50.0), ("2001:db8::2", 20.0)), 0.0)
    book.update(ra(domains=(("a.example", 30.0), ("b.example", INF))), 0.0)
    assert book.next_expiry(0.0) == 20.0
    assert book.next_expiry(20.0) == 30.0
    assert book.next_expiry(30.0) == 50.0
    assert book.next_expiry(50.0) is None
    assert book.current(50.0) == ((), ("b.example",))


def test_a_new_lifetime_replaces_the_old_one_shorter_or_longer():
    """RFC 8106 section 5.3.1: an entry heard again takes its Expiration-time from the new
    Lifetime."""
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 600.0)), 0.0)
    assert not book.update(ra(("2001:db8::1", 10.0)), 100.0)
    assert book.next_expiry(100.0) == 110.0
    assert not book.update(ra(("2001:db8::1", 1000.0)), 105.0)
    assert book.next_expiry(105.0) == 1105.0
    assert book.current(1104.0) == ((A("2001:db8::1"),), ())


def test_lifetime_zero_removes_and_forgets_nothing_else():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 600.0), ("2001:db8::2", 600.0)), 0.0)
    book.update(ra(domains=(("a.example", 600.0), ("b.example", 600.0))), 0.0)
    assert book.update(ra(("2001:db8::1", 0.0), domains=(("b.example", 0.0),)), 1.0)
    assert book.current(1.0) == ((A("2001:db8::2"),), ("a.example",))
    assert not book.update(ra(("2001:db8::9", 0.0), domains=(("c.example", 0.0),)), 2.0)
    assert book.current(2.0) == ((A("2001:db8::2"),), ("a.example",))


def test_the_order_is_first_heard_first_a_refresh_keeps_its_place():
    book = RaDnsBook()
    book.update(ra(("2001:db8::2", 600.0)), 0.0)
    book.update(ra(("2001:db8::1", 600.0), ("2001:db8::2", 600.0)), 1.0)
    assert book.current(1.0)[0] == (A("2001:db8::2"), A("2001:db8::1"))
    book.update(ra(("2001:db8::2", 0.0)), 2.0)
    book.update(ra(("2001:db8::2", 600.0)), 3.0)
    assert book.current(3.0)[0] == (A("2001:db8::1"), A("2001:db8::2"))


def test_update_says_whether_what_is_current_changed():
    book = RaDnsBook()
    assert book.update(ra(("2001:db8::1", 600.0)), 0.0)
    assert not book.update(ra(("2001:db8::1", 600.0)), 10.0)
    assert book.update(ra(domains=(("a.example", 600.0),)), 20.0)
    assert not book.update(ra(domains=(("A.Example", 900.0),)), 20.0)
    assert not book.update(ra(), 30.0)
    assert book.update(ra(("2001:db8::1", 0.0)), 40.0)
    # an entry that expired since the last reading is no change an update makes
    book.update(ra(("2001:db8::2", 10.0)), 50.0)
    assert not book.update(ra(), 70.0)
    assert book.current(70.0) == ((), ("a.example",))


def test_one_ra_naming_more_than_the_book_holds_keeps_its_first():
    book = RaDnsBook()
    servers = [(f"2001:db8::{i}", 600.0) for i in range(1, 6)]
    book.update(ra(*servers), 0.0)
    assert book.current(0.0)[0] == (A("2001:db8::1"), A("2001:db8::2"), A("2001:db8::3"))
    domains = tuple((f"d{i}.example", 600.0) for i in range(1, 9))
    book.update(ra(domains=domains), 0.0)
    assert book.current(0.0)[1] == tuple(f"d{i}.example" for i in range(1, 7))


def test_a_full_book_takes_a_new_entry_in_place_of_the_one_that_expires_first():
    """RFC 8106 section 5.3.1: with a sufficient number kept, the latest is preferred and
    replaces the one that will expire first."""
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 300.0), ("2001:db8::2", 100.0), ("2001:db8::3", 200.0)), 0.0)
    assert book.update(ra(("2001:db8::4", 50.0)), 10.0)
    assert book.current(10.0)[0] == (A("2001:db8::1"), A("2001:db8::3"), A("2001:db8::4"))
    assert book.next_expiry(10.0) == 60.0


def test_a_tie_for_the_first_to_expire_goes_to_the_one_heard_first():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 100.0), ("2001:db8::2", 100.0), ("2001:db8::3", 100.0)), 0.0)
    book.update(ra(("2001:db8::4", 100.0)), 0.0)
    assert book.current(0.0)[0] == (A("2001:db8::2"), A("2001:db8::3"), A("2001:db8::4"))


def test_a_full_book_never_drops_an_entry_the_same_ra_named():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 100.0), ("2001:db8::2", 200.0), ("2001:db8::3", 300.0)), 0.0)
    # ::1 is renewed first, so the new ::4 takes the place of ::2, not of ::1
    book.update(ra(("2001:db8::1", 10.0), ("2001:db8::4", 600.0)), 0.0)
    assert book.current(0.0)[0] == (A("2001:db8::1"), A("2001:db8::3"), A("2001:db8::4"))
    # an RA naming every entry and a new one: no room, the new one is not taken
    book.update(
        ra(("2001:db8::1", 9.0), ("2001:db8::3", 9.0), ("2001:db8::4", 9.0), ("::5", 600.0)), 0.0
    )
    assert book.current(0.0)[0] == (A("2001:db8::1"), A("2001:db8::3"), A("2001:db8::4"))


def test_expired_entries_take_no_room():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 10.0), ("2001:db8::2", 10.0), ("2001:db8::3", 900.0)), 0.0)
    book.update(ra(("2001:db8::4", 600.0), ("2001:db8::5", 600.0)), 20.0)
    assert book.current(20.0)[0] == (A("2001:db8::3"), A("2001:db8::4"), A("2001:db8::5"))


def test_domains_are_one_whatever_their_case_spelt_as_first_heard():
    book = RaDnsBook()
    book.update(ra(domains=(("Lan.Example", 100.0),)), 0.0)
    book.update(ra(domains=(("LAN.EXAMPLE", 600.0), ("lan.example", 600.0))), 1.0)
    assert book.current(1.0) == ((), ("Lan.Example",))
    assert book.next_expiry(1.0) == 601.0
    book.update(ra(domains=(("lan.EXAMPLE", 0.0),)), 2.0)
    assert book.current(2.0) == ((), ())


def test_the_book_holds_as_many_as_it_is_told():
    book = RaDnsBook(servers=1, domains=2)
    book.update(ra(("2001:db8::1", 600.0), ("2001:db8::2", 600.0)), 0.0)
    book.update(ra(domains=(("a.x", 600.0), ("b.x", 600.0), ("c.x", 600.0))), 0.0)
    assert book.current(0.0) == ((A("2001:db8::1"),), ("a.x", "b.x"))


def test_the_kernels_messages_fill_the_book():
    book = RaDnsBook()
    for body in (KERNEL_RDNSS, KERNEL_DNSSL):
        heard = parse_useropt(body, 2)
        assert heard is not None
        book.update(heard, 1000.0)
    assert book.current(1000.0) == ((A("2001:db8::53"), A("fe80::53")), ("lan.example",))
    assert book.next_expiry(1000.0) == 1600.0


def test_a_domain_removed_and_heard_again_is_spelt_as_heard_again():
    book = RaDnsBook()
    book.update(ra(domains=(("Lan.Example", 600.0),)), 0.0)
    book.update(ra(domains=(("lan.example", 0.0),)), 1.0)
    book.update(ra(domains=(("lan.EXAMPLE", 600.0),)), 2.0)
    assert book.current(2.0) == ((), ("lan.EXAMPLE",))
    book.update(ra(domains=(("a.example", 5.0),)), 3.0)
    book.update(ra(domains=(("A.example", 5.0),)), 9.0)
    assert book.current(9.0) == ((), ("lan.EXAMPLE", "A.example"))


def test_a_removal_anywhere_in_the_ra_makes_room():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 100.0), ("2001:db8::2", 100.0), ("2001:db8::3", 100.0)), 0.0)
    book.update(ra(("2001:db8::4", 100.0), ("2001:db8::3", 0.0)), 0.0)
    assert book.current(0.0)[0] == (A("2001:db8::1"), A("2001:db8::2"), A("2001:db8::4"))
    book.update(ra(("2001:db8::1", 0.0), ("2001:db8::5", 100.0)), 0.0)
    assert book.current(0.0)[0] == (A("2001:db8::2"), A("2001:db8::4"), A("2001:db8::5"))


def test_a_new_entry_without_room_does_not_stop_the_rest_of_the_ra():
    book = RaDnsBook()
    book.update(ra(("2001:db8::1", 100.0), ("2001:db8::2", 100.0), ("2001:db8::3", 100.0)), 0.0)
    book.update(
        ra(
            ("2001:db8::1", 90.0),
            ("2001:db8::2", 90.0),
            ("2001:db8::3", 90.0),
            ("2001:db8::4", 600.0),  # no room: every entry was named
            ("2001:db8::1", 50.0),  # (a second RDNSS option in the same RA)
        ),
        0.0,
    )
    assert book.current(0.0)[0] == (A("2001:db8::1"), A("2001:db8::2"), A("2001:db8::3"))
    assert book.next_expiry(0.0) == 50.0
