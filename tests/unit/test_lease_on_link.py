"""What of a DHCP lease goes on a bridged job's interface and into its update ad (README,
Bridge mode: "routes (classless routes when given, else the router)"; ``LarkHostname``,
``LarkDHCPLeaseStart``, ``LarkDHCPMacAddress``)."""

from __future__ import annotations

import ipaddress
import time

from dhcp.lease import Lease
from lark_async.backends.lan.job_address import lease_attributes
from lark_async.backends.lan.lease_link import OnLink

A = ipaddress.IPv4Address
N = ipaddress.IPv4Network


def lease(**kw) -> Lease:
    base = dict(
        address=A("10.77.0.120"),
        prefixlen=24,
        server_id=A("10.77.0.1"),
        lifetime_s=600.0,
        t1_s=300.0,
        t2_s=525.0,
        start=1000.0,
    )
    return Lease(**{**base, **kw})


def test_classless_routes_win_over_the_router_and_zero_means_on_link():
    given = lease(
        routers=(A("10.77.0.9"),),
        routes=(
            (N("10.229.0.0/16"), A("10.77.0.5")),
            (N("10.230.0.0/16"), A("0.0.0.0")),
            (N("0.0.0.0/0"), A("10.77.0.1")),
        ),
    )
    on_link = OnLink.from_lease(given)
    assert on_link.interface == ipaddress.IPv4Interface("10.77.0.120/24")
    assert on_link.routes == (
        (N("10.229.0.0/16"), A("10.77.0.5")),
        (N("10.230.0.0/16"), None),
        (N("0.0.0.0/0"), A("10.77.0.1")),
    )
    assert lease_attributes(given, bytes(6), 1000.0)["LarkGateway"] == "10.77.0.1"


def test_without_classless_routes_the_first_router_is_the_default_route():
    given = lease(routers=(A("10.77.0.9"), A("10.77.0.8")))
    assert OnLink.from_lease(given).routes == ((N("0.0.0.0/0"), A("10.77.0.9")),)
    assert OnLink.from_lease(lease()).routes == ()


def test_the_ad_has_the_host_name_the_lease_start_in_epoch_seconds_and_the_mac():
    given = lease(hostname="jobhost", start=1000.0)
    mac = bytes.fromhex("02a0b1c2d3e4")
    before = time.time()
    values = lease_attributes(given, mac, now_monotonic=1030.0)  # leased 30 s ago
    after = time.time()
    assert values["LarkHostname"] == "jobhost"
    assert values["LarkDHCPMacAddress"] == "02:a0:b1:c2:d3:e4"
    assert int(before - 30) - 1 <= values["LarkDHCPLeaseStart"] <= after - 30
    assert values["LarkDHCPLeaseLifetime"] == 600
    assert "LarkHostname" not in lease_attributes(lease(), mac, 1000.0)
