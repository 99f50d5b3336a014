"""dhcp-test -6 prints a lease under names like the DHCPv4 ones."""

from __future__ import annotations

import ipaddress
import time

from dhcp6 import Lease, LeasedAddress
from lark_async.backends.lan.job_lease6 import lease6_attributes

A = ipaddress.IPv6Address


def test_a_lease_as_attributes():
    lease = Lease(
        addresses=(LeasedAddress(A("fd77::100"), 50.0, 60.0),),
        iaid=7,
        server_duid=b"\x00\x02\x00\x00\x09\xbf\x01\x02",
        t1_s=30.0,
        t2_s=45.0,
        start=100.0,
        dns_servers=(A("fd77::53"), A("fd77::54")),
        domains=("site.lark.test", "lark.test"),
    )
    values = lease6_attributes(lease, b"\x00\x04" + bytes(16), now_monotonic=110.0)
    start = values.pop("LarkDHCPv6LeaseStart")
    assert abs(start - (time.time() - 10)) <= 1  # type: ignore[operator]
    assert values == {
        "LarkInnerAddressIPv6": "fd77::100",
        "LarkDHCPv6Server": "00:02:00:00:09:bf:01:02",
        "LarkDHCPv6LeaseLifetime": 60,
        "LarkDHCPv6RenewTime": 30,
        "LarkDHCPv6RebindTime": 45,
        "LarkDHCPv6DUID": "00:04" + ":00" * 16,
        "LarkDHCPv6DNSServers": "fd77::53,fd77::54",
        "LarkDHCPv6Domains": "site.lark.test,lark.test",
    }


def test_infinite_lifetimes_and_several_addresses():
    lease = Lease(
        addresses=(
            LeasedAddress(A("fd77::100"), float("inf"), float("inf")),
            LeasedAddress(A("fd77::101"), float("inf"), float("inf")),
        ),
        iaid=7,
        server_duid=b"\x00\x01",
        t1_s=float("inf"),
        t2_s=float("inf"),
        start=0.0,
    )
    values = lease6_attributes(lease, b"\x00\x04" + bytes(16), now_monotonic=0.0)
    assert values["LarkDHCPv6LeaseLifetime"] == -1 and values["LarkDHCPv6RenewTime"] == -1
    assert values["LarkDHCPv6Addresses"] == "fd77::100,fd77::101"
    assert "LarkDHCPv6DNSServers" not in values and "LarkDHCPv6Domains" not in values
