"""A bridged job's IPv6 addresses from its kernel's RTM_NEWADDR: parsed strictly (the job
cannot write them, but a short or odd message must not become an address)."""

from __future__ import annotations

import ipaddress
import math
import socket
import struct

from lark_async.backends.lan import slaac
from lark_async.backends.netlink.core import attr

LL = ipaddress.IPv6Address("fe80::aa:bbff:fecc:ddee")


def body(addr=LL, index=7, family=socket.AF_INET6, flags=0, valid=None, extra=b"") -> bytes:
    found = struct.pack("=BBBBi", family, 64, 0, 253, index) + attr(slaac.IFA_ADDRESS, addr.packed)
    if valid is not None:
        found += attr(slaac.IFA_CACHEINFO, struct.pack("=IIII", 100, valid, 0, 0))
    if flags:
        found += attr(slaac.IFA_FLAGS, struct.pack("=I", flags))
    return found + extra


def test_an_address_of_the_link_with_its_valid_lifetime_and_a_margin():
    assert slaac.parse_address(body(valid=3600), 7) == (LL, 3600.0 + slaac.MARGIN_S)
    assert slaac.parse_address(body(valid=slaac.FOREVER), 7) == (LL, None)
    assert slaac.parse_address(body(), 7) == (LL, None)


def test_other_links_families_failed_dad_and_short_messages_are_not_the_jobs():
    assert slaac.parse_address(body(index=8), 7) is None
    assert slaac.parse_address(body(family=socket.AF_INET), 7) is None
    assert slaac.parse_address(body(flags=slaac.IFA_F_DADFAILED), 7) is None
    assert slaac.parse_address(b"\x0a\x40\0", 7) is None
    cut = struct.pack("=BBBBi", socket.AF_INET6, 64, 0, 0, 7) + attr(slaac.IFA_ADDRESS, b"\xfe\x80")
    assert slaac.parse_address(cut, 7) is None


def test_the_set_is_written_again_only_when_it_would_go_wrong():
    a, b = ipaddress.IPv6Address("fd77::1:5"), ipaddress.IPv6Address("fe80::5")
    written = slaac.expiries([(a, 1800.0), (b, None)], now=100.0)
    assert written == {a: 1900.0, b: math.inf}
    # a router advertisement renewing the lifetime a few seconds later: nothing to write
    assert not slaac.stale(written, [(a, 1800.0), (b, None)], now=104.0)
    assert not slaac.stale(written, [(a, 1797.0), (b, None)], now=104.0)
    # past half its time the element is extended; a shortened lifetime is taken at once
    assert slaac.stale(written, [(a, 1800.0), (b, None)], now=1001.0)
    assert not slaac.stale(written, [(a, 1800.0), (b, None)], now=999.0)
    assert slaac.stale(written, [(a, 1680.0), (b, None)], now=104.0)
    # another set of addresses, or one that is now forever
    assert slaac.stale(written, [(a, 1800.0)], now=104.0)
    assert slaac.stale(written, [(a, 1800.0), (b, None), (b + 1, None)], now=104.0)
    assert slaac.stale(written, [(a, None), (b, None)], now=104.0)
