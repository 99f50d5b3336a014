"""The link-local address from rtnetlink bytes: dumps, notifications, flags, junk."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from dhcp6 import ifaddr
from dhcp6.trio_driver import render_pktinfo

LL = ipaddress.IPv6Address("fe80::1")
GLOBAL = ipaddress.IPv6Address("fd77:0:0:1::100")


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def addr_msg(
    address: ipaddress.IPv6Address,
    index: int = 3,
    flags: int = 0,
    kind: int = ifaddr.RTM_NEWADDR,
    family: int = ifaddr.AF_INET6,
    big_flags: int | None = None,
) -> bytes:
    body = struct.pack("=BBBBi", family, 64, flags & 0xFF, 0, index)
    body += attr(ifaddr.IFA_ADDRESS, address.packed)
    if big_flags is not None:
        body += attr(ifaddr.IFA_FLAGS, struct.pack("=I", big_flags))
    return struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body


DONE = struct.pack("=IHHII", 20, ifaddr.NLMSG_DONE, 2, 1, 0) + b"\0" * 4


def test_a_dump_gives_every_address_and_its_end():
    found, done = ifaddr.parse_addresses(addr_msg(LL) + addr_msg(GLOBAL) + DONE)
    assert done
    assert [a.address for a in found] == [LL, GLOBAL]
    assert ifaddr.link_local(found, 3) == ifaddr.IfAddr(3, LL, 0)


def test_a_tentative_link_local_is_not_usable_until_a_notification_says_so():
    found, done = ifaddr.parse_addresses(addr_msg(LL, flags=ifaddr.IFA_F_TENTATIVE))
    assert not done
    seen = ifaddr.link_local(found, 3)
    assert seen is not None and seen.tentative and not seen.usable
    # the 32-bit IFA_FLAGS attribute wins over the 8-bit field
    found, _ = ifaddr.parse_addresses(addr_msg(LL, flags=ifaddr.IFA_F_TENTATIVE, big_flags=0x80))
    assert ifaddr.link_local(found, 3).usable  # type: ignore[union-attr]


def test_an_optimistic_link_local_serves_while_its_dad_runs_unless_it_fails():
    """RFC 4429: a bridged job's interface has optimistic DAD, and its client speaks at once."""
    both = ifaddr.IFA_F_TENTATIVE | ifaddr.IFA_F_OPTIMISTIC
    found, _ = ifaddr.parse_addresses(addr_msg(LL, flags=both))
    seen = ifaddr.link_local(found, 3)
    assert seen is not None and seen.optimistic and seen.usable
    found, _ = ifaddr.parse_addresses(addr_msg(LL, flags=both | ifaddr.IFA_F_DADFAILED))
    assert not ifaddr.link_local(found, 3).usable  # type: ignore[union-attr]


def test_dad_failed_and_other_interfaces_and_families():
    found, _ = ifaddr.parse_addresses(
        addr_msg(LL, flags=ifaddr.IFA_F_DADFAILED | ifaddr.IFA_F_TENTATIVE)
        + addr_msg(ipaddress.IPv6Address("fe80::2"), index=4)
        + addr_msg(LL, family=2)
    )
    assert [a.index for a in found] == [3, 4]
    seen = ifaddr.link_local(found, 3)
    assert seen is not None and seen.dad_failed and not seen.usable
    assert ifaddr.link_local(found, 5) is None
    assert ifaddr.link_local(found[:1] + found[1:], 4).usable  # type: ignore[union-attr]


def test_a_usable_link_local_is_preferred_and_a_removed_one_is_not_there():
    found, _ = ifaddr.parse_addresses(
        addr_msg(ipaddress.IPv6Address("fe80::9"), flags=ifaddr.IFA_F_TENTATIVE) + addr_msg(LL)
    )
    assert ifaddr.link_local(found, 3).address == LL  # type: ignore[union-attr]
    gone, _ = ifaddr.parse_addresses(addr_msg(LL, kind=ifaddr.RTM_DELADDR))
    assert gone[0].gone and ifaddr.link_local(gone, 3) is None
    assert ifaddr.link_local(found[:1], 3).address != LL  # type: ignore[union-attr]
    assert ifaddr.link_local([a for a in found if a.address.is_global], 3) is None


def test_truncated_or_junk_netlink_data_is_skipped():
    whole = addr_msg(LL) + DONE
    for cut in range(len(whole)):
        found, _ = ifaddr.parse_addresses(whole[:cut])
        assert all(a.address == LL for a in found)
    assert ifaddr.parse_addresses(b"\xff" * 40) == ([], False)
    short = struct.pack("=IHHII", 20, ifaddr.RTM_NEWADDR, 0, 0, 0) + b"\x0a\0\0\0"
    assert ifaddr.parse_addresses(short) == ([], False)


def test_the_dump_request_and_pktinfo_are_what_the_kernel_reads():
    req = ifaddr.render_dump_request(7)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert (length, kind, flags, seq) == (len(req), ifaddr.RTM_GETADDR, 0x301, 7)
    assert req[16] == ifaddr.AF_INET6
    assert render_pktinfo(LL, 5) == LL.packed + struct.pack("=I", 5)


# -- how the bytes are walked (mutation testing: bench/mutation.py dhcp6) --------------------


def message(kind: int, body: bytes, extra: int = 0) -> bytes:
    """A netlink message whose length field says ``extra`` bytes more than it has."""
    return struct.pack("=IHHII", 16 + len(body) + extra, kind, 2, 1, 0) + body


def ifa(*attrs: bytes, family: int = ifaddr.AF_INET6) -> bytes:
    return struct.pack("=BBBBi", family, 64, 0, 0, 3) + b"".join(attrs)


def addresses(data: bytes) -> list[ipaddress.IPv6Address]:
    return [a.address for a in ifaddr.parse_addresses(data)[0]]


def test_the_dump_request_is_every_ipv6_address_of_every_interface_to_the_kernel():
    """ifaddrmsg all 0 but the family (under strict checking the kernel filters by its index
    and refuses other fields), and pid 0: the kernel."""
    assert ifaddr.render_dump_request(7) == struct.pack(
        "=IHHII", 24, ifaddr.RTM_GETADDR, 0x301, 7, 0
    ) + struct.pack("=BBBBi", ifaddr.AF_INET6, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "before",
    [
        attr(99, b"x" * 5),  # padded to 12 bytes
        attr(99, b""),  # only a header
        attr(99, b"x" * 8) + attr(98, b"y" * 4),
        attr(99 | 0x8000, bytes(40_000)),  # longer than a signed 16-bit length
    ],
)
def test_attributes_of_any_length_are_stepped_over_to_the_address(before):
    body = ifa(before + attr(ifaddr.IFA_ADDRESS, LL.packed))
    assert addresses(message(ifaddr.RTM_NEWADDR, body)) == [LL]


@pytest.mark.parametrize(
    "attrs",
    [
        struct.pack("=HH", 2, 99) + b"\0\0" + attr(ifaddr.IFA_ADDRESS, LL.packed),
        struct.pack("=HH", 0, 99) + attr(ifaddr.IFA_ADDRESS, LL.packed),
        struct.pack("=HH", 24, ifaddr.IFA_ADDRESS) + LL.packed,  # 4 bytes more than left
    ],
)
def test_an_attribute_that_does_not_fit_ends_the_attributes(attrs):
    assert addresses(message(ifaddr.RTM_NEWADDR, ifa(attrs))) == []


def test_the_local_address_wins_over_the_peers():
    body = ifa(attr(ifaddr.IFA_ADDRESS, GLOBAL.packed), attr(ifaddr.IFA_LOCAL, LL.packed))
    assert addresses(message(ifaddr.RTM_NEWADDR, body)) == [LL]


def test_a_message_without_an_ipv6_address_is_skipped_and_the_next_one_read():
    data = (
        message(ifaddr.RTM_NEWADDR, ifa(attr(ifaddr.IFA_FLAGS, struct.pack("=I", 0))))
        + message(ifaddr.RTM_NEWADDR, ifa(attr(ifaddr.IFA_ADDRESS, b"\x0a\0\0\x01")))
        + addr_msg(GLOBAL, family=2)
        + addr_msg(LL)
    )
    assert addresses(data) == [LL]


def test_messages_are_stepped_over_by_their_length_padded_to_4():
    data = message(99, b"a") + b"\0" * 3 + addr_msg(LL)  # 17 bytes and 3 of padding
    assert addresses(data) == [LL]


def test_a_done_with_no_payload_ends_the_dump():
    found, done = ifaddr.parse_addresses(addr_msg(LL) + message(ifaddr.NLMSG_DONE, b""))
    assert done and [a.address for a in found] == [LL]


@pytest.mark.parametrize(
    "data",
    [
        message(ifaddr.RTM_NEWADDR, ifa(attr(ifaddr.IFA_ADDRESS, LL.packed)), extra=4),
        struct.pack("=IHHII", 0, ifaddr.RTM_NEWADDR, 2, 1, 0) + addr_msg(LL),
    ],
)
def test_a_message_whose_length_does_not_fit_ends_the_datagram(data):
    assert ifaddr.parse_addresses(data) == ([], False)
