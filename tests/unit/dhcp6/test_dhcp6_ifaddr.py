"""The link-local address from rtnetlink bytes: dumps, notifications, flags, junk."""

from __future__ import annotations

import ipaddress
import struct

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
