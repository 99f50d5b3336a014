"""The DHCP client (dhcp/) against a real dnsmasq in the sandbox site namespace."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import time

import trio
from sandbox import SITE_ADDR, SITE_NET, Host, netns_list, sh

from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.trio_driver import DhcpFailed, Driver, Sockets
from lark_async.backends import netns

POOL = (ipaddress.IPv4Address(f"{SITE_NET}.100"), ipaddress.IPv4Address(f"{SITE_NET}.150"))


def start_dnsmasq(sandbox) -> str:
    leases = sandbox.tmp / "dnsmasq.leases"
    sandbox.start_in(
        sandbox.site,
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--no-ping",
            "--interface=br0",
            "--bind-interfaces",
            "--dhcp-authoritative",
            f"--dhcp-range={POOL[0]},{POOL[1]},2m",
            f"--dhcp-leasefile={leases}",
            f"--pid-file={sandbox.tmp / 'dnsmasq.pid'}",
            "--user=root",
        ],
    )
    return leases


def open_sockets(host_netns: str, ifname: str) -> Sockets:
    def inside() -> Sockets:
        fd = os.open(f"/run/netns/{host_netns}", os.O_RDONLY)
        try:
            netns.setns(fd)
        finally:
            os.close(fd)
        return Sockets.open(ifname)

    return netns.in_fresh_thread(inside)


def make_client(mac: bytes, **kw) -> Client:
    config = Config(
        chaddr=mac, client_id=opt.client_id(1, opt.duid_ll(mac)), retransmit_initial_s=0.5, **kw
    )
    return Client(config, rng=random.Random())


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


async def test_dora_then_release_is_seen_by_dnsmasq(sandbox, host):
    leases = start_dnsmasq(sandbox)
    socks = open_sockets(host.netns, "uplink")
    try:
        driver = Driver(make_client(socks.mac, timeout_s=15), socks)
        async with trio.open_nursery() as nursery:
            lease = await nursery.start(driver.run)
            assert POOL[0] <= lease.address <= POOL[1]
            assert lease.server_id == ipaddress.IPv4Address(f"{SITE_NET}.1")
            assert lease.prefixlen == 24 and lease.lifetime_s == 120
            assert wait_for(lambda: leases.exists() and str(lease.address) in leases.read_text())
            await driver.release()
        # RELEASE went out from the leased address, so dnsmasq honours it
        assert wait_for(lambda: str(lease.address) not in leases.read_text())
    finally:
        socks.close()


async def test_two_clients_on_one_link_get_distinct_addresses(sandbox, host):
    start_dnsmasq(sandbox)
    socks = open_sockets(host.netns, "uplink")
    try:
        # same MAC, different RFC 4361 identities: the server must see two clients
        clients = [
            Client(
                Config(
                    chaddr=socks.mac,
                    client_id=opt.client_id(i, opt.duid_ll(socks.mac)),
                    retransmit_initial_s=0.5,
                    timeout_s=15,
                ),
                rng=random.Random(),
            )
            for i in (1, 2)
        ]
        got = []
        for client in clients:
            driver = Driver(client, socks)
            async with trio.open_nursery() as nursery:
                got.append(await nursery.start(driver.run))
                nursery.cancel_scope.cancel()
        assert got[0].address != got[1].address
    finally:
        socks.close()


async def test_no_server_is_a_clear_failure_within_the_timeout(sandbox, host):
    socks = open_sockets(host.netns, "uplink")
    try:
        driver = Driver(make_client(socks.mac, timeout_s=1.5), socks)
        t0 = trio.current_time()
        try:
            await driver.run()
        except DhcpFailed as exc:
            assert "no lease after 1.5 s (SELECTING)" in str(exc)
        else:
            raise AssertionError("a lease with no server")
        assert trio.current_time() - t0 < 3
    finally:
        socks.close()


def test_dhcp_test_tool_prints_the_lease_and_releases_it(sandbox, host):
    leases = start_dnsmasq(sandbox)
    r = sandbox.run_agent(host, "--interface", "uplink", "--json", verb="dhcp-test")
    assert r.returncode == 0, r.stderr
    values = json.loads(r.stdout)
    address = ipaddress.IPv4Address(values["LarkInnerAddressIPv4"])
    assert POOL[0] <= address <= POOL[1]
    assert values["LarkDHCPServer"] == values["LarkGateway"] == f"{SITE_NET}.1"
    assert values["LarkSubnetMask"] == "255.255.255.0"
    assert values["LarkDHCPLeaseLifetime"] == 120
    assert wait_for(lambda: str(address) not in leases.read_text())


def test_dhcp_test_tool_without_a_server_is_one_line(sandbox, host):
    r = sandbox.run_agent(host, "--interface", "uplink", "--timeout", "1.5", verb="dhcp-test")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        "lark-agent: error: no DHCP lease on uplink: no lease after 1.5 s (SELECTING)"
    )
    r = sandbox.run_agent(host, "--interface", "nope0", verb="dhcp-test")
    assert r.stderr.strip() == (
        "lark-agent: error: interface nope0 does not exist in this network namespace"
    )


def test_dhcp_test_tool_on_a_bridge_uses_a_throwaway_veth_and_removes_it(sandbox):
    start_dnsmasq(sandbox)
    site = Host(sandbox.site, SITE_ADDR)
    before = set(netns_list())
    r = sandbox.run_agent(site, "--bridge", "br0", "--json", verb="dhcp-test")
    assert r.returncode == 0, r.stderr
    assert POOL[0] <= ipaddress.IPv4Address(json.loads(r.stdout)["LarkInnerAddressIPv4"]) <= POOL[1]
    assert set(netns_list()) == before
    links = sh("ip", "-o", "link", "show", netns=sandbox.site).stdout
    assert " e_dt" not in links
    r = sandbox.run_agent(site, "--bridge", "nobr0", verb="dhcp-test")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        "lark-agent: error: bridge nobr0 does not exist in this network namespace"
    )
