"""The DHCP client (dhcp/) against a real dnsmasq in the sandbox site namespace."""

from __future__ import annotations

import ipaddress
import json

import trio
from helpers.dhcp import (
    POOL,
    addressing_driver,
    bound,
    first_lease,
    make_client,
    second_server,
    start_dnsmasq,
    stop,
    uplink_sockets,
)
from sandbox import SITE_ADDR, SITE_NET, Host, netns_list, sh, wait_for

from dhcp.events import LeaseBound, LeaseLost, LeaseRenewed, Transmit
from dhcp.options import MessageType
from dhcp.trio_driver import DhcpFailed, Driver


async def test_dora_then_release_is_seen_by_dnsmasq(sandbox, host):
    leases, _ = start_dnsmasq(sandbox)
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(socks.mac, timeout_s=15), socks)
        async with trio.open_nursery() as nursery:  # run returns after the release
            lease = await nursery.start(driver.run)
            assert POOL[0] <= lease.address <= POOL[1]
            assert lease.server_id == ipaddress.IPv4Address(f"{SITE_NET}.1")
            assert lease.prefixlen == 24 and lease.lifetime_s == 120
            assert wait_for(lambda: leases.exists() and str(lease.address) in leases.read_text())
            await driver.release()
        # RELEASE went out from the leased address, so dnsmasq honours it
        assert wait_for(lambda: str(lease.address) not in leases.read_text())


async def test_two_clients_on_one_link_get_distinct_addresses(sandbox, host):
    start_dnsmasq(sandbox)
    with uplink_sockets(host) as socks:
        # same MAC, different RFC 4361 identities: the server must see two clients
        clients = [make_client(socks.mac, iaid=i, timeout_s=15) for i in (1, 2)]
        got = [await first_lease(Driver(client, socks)) for client in clients]
        assert got[0].address != got[1].address


async def test_no_server_is_a_clear_failure_within_the_timeout(sandbox, host):
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(socks.mac, timeout_s=1.5), socks)
        t0 = trio.current_time()
        try:
            await driver.run()
        except DhcpFailed as exc:
            assert "no lease after 1.5 s: no server answered" in str(exc)
        else:
            raise AssertionError("a lease with no server")
        assert trio.current_time() - t0 < 3


def test_dhcp_test_tool_prints_the_lease_and_releases_it(sandbox, host):
    leases, _ = start_dnsmasq(sandbox)
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
        "lark-agent: error: no DHCP lease on uplink: no lease after 1.5 s: no server answered"
    )
    r = sandbox.run_agent(host, "--interface", "nope0", verb="dhcp-test")
    assert r.stderr.strip() == (
        "lark-agent: error: interface nope0 does not exist in this network namespace"
    )


def test_dhcp_test_tool_on_a_bridge_uses_a_throwaway_veth_and_removes_it(sandbox):
    start_dnsmasq(sandbox)
    site = Host(sandbox.site, SITE_ADDR)

    def throwaway() -> set[str]:  # the tester's namespaces only: other runs may be busy
        return {ns for ns in netns_list() if ns.startswith("lark-dt")}

    before = throwaway()
    r = sandbox.run_agent(site, "--bridge", "br0", "--json", verb="dhcp-test")
    assert r.returncode == 0, r.stderr
    assert POOL[0] <= ipaddress.IPv4Address(json.loads(r.stdout)["LarkInnerAddressIPv4"]) <= POOL[1]
    assert throwaway() == before
    links = sh("ip", "-o", "link", "show", netns=sandbox.site).stdout
    assert " e_dt" not in links
    r = sandbox.run_agent(site, "--bridge", "nobr0", verb="dhcp-test")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        "lark-agent: error: bridge nobr0 does not exist in this network namespace"
    )


def t1_of(seconds: int) -> tuple[str, ...]:
    """dnsmasq's shortest lease is 2 minutes; a short T1 makes it renew within a test."""
    return (f"--dhcp-option=58,{seconds}", f"--dhcp-option=59,{seconds * 2}")


async def test_the_lease_is_renewed_through_dnsmasq(sandbox, host):
    start_dnsmasq(sandbox, *t1_of(2))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = addressing_driver(host, socks, seen, timeout_s=15, renew_retry_min_s=0.5)
        async with bound(driver) as lease:
            assert lease.t1_s <= 3  # dnsmasq rounds it
            await trio.sleep(6.8)
            await driver.release()
    renewals = [a for a in seen if isinstance(a, LeaseRenewed)]
    assert len(renewals) >= 2 and all(r.lease.address == lease.address for r in renewals)
    log = (sandbox.tmp / "dnsmasq.log").read_text()
    assert log.count(f"DHCPACK(br0) {lease.address}") >= 1 + len(renewals)
    assert f"DHCPRELEASE(br0) {lease.address}" in log


async def test_a_nak_on_renew_sends_the_client_back_to_init(sandbox, host):
    _, first = start_dnsmasq(sandbox, *t1_of(2))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = addressing_driver(host, socks, seen, timeout_s=15, renew_retry_min_s=0.5)
        async with bound(driver):
            stop(first)  # back without the lease, not authoritative: a renewal is NAKed
            start_dnsmasq(sandbox, *t1_of(2), tag="dnsmasq2", authoritative=False)
            with trio.fail_after(10):
                while sum(isinstance(a, LeaseBound) for a in seen) < 2:
                    await trio.sleep(0.1)
    kinds = [(type(a).__name__, getattr(a, "reason", None)) for a in seen]
    assert ("LeaseLost", "nak") in kinds, (kinds, (sandbox.tmp / "dnsmasq2.log").read_text())
    lost = kinds.index(("LeaseLost", "nak"))
    sent = [a.message.message_type for a in seen[:lost] if isinstance(a, Transmit)]
    assert sent[-1] is MessageType.REQUEST  # the renewal that was NAKed
    after = [a.message.message_type for a in seen[lost:] if isinstance(a, Transmit)]
    assert after[0] is MessageType.DISCOVER  # INIT again
    assert ("LeaseBound", None) in kinds[lost:]
    assert "DHCPNAK(br0)" in (sandbox.tmp / "dnsmasq2.log").read_text()


async def test_an_address_in_use_is_declined_and_another_one_taken(sandbox, host):
    squatter = second_server(sandbox)  # holds .100, which dnsmasq offers this client first
    sh("ip", "addr", "add", f"{SITE_NET}.100/24", "dev", "lan", netns=squatter)
    seen: list = []
    with uplink_sockets(host) as socks:
        mac = socks.mac.hex(":")
        start_dnsmasq(sandbox, f"--dhcp-host={mac},{SITE_NET}.100")
        client = make_client(socks.mac, timeout_s=15, decline_wait_s=0.2)
        lease = await first_lease(Driver(client, socks, on_action=seen.append))
    assert POOL[0] < lease.address <= POOL[1]
    sent = [a.message.message_type for a in seen if isinstance(a, Transmit)]
    declined = sent.index(MessageType.DECLINE)  # the REQUEST it answers came just before
    assert sent[declined - 1] is MessageType.REQUEST and sent[declined + 1] is MessageType.DISCOVER
    assert not any(isinstance(a, LeaseLost) for a in seen)  # .100 was never ours
    assert f"DHCPDECLINE(br0) {SITE_NET}.100" in (sandbox.tmp / "dnsmasq.log").read_text()


def test_dhcp_test_tool_holding_on_a_bridge_shows_renewals_then_releases(sandbox):
    leases, _ = start_dnsmasq(sandbox, *t1_of(2))
    site = Host(sandbox.site, SITE_ADDR)
    r = sandbox.run_agent(site, "--bridge", "br0", "--json", "--hold", "5", verb="dhcp-test")
    assert r.returncode == 0, r.stderr
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(printed) >= 2 and r.stderr.count("# renewed") == len(printed) - 1
    assert len({p["LarkInnerAddressIPv4"] for p in printed}) == 1
    log = (sandbox.tmp / "dnsmasq.log").read_text()
    address = printed[0]["LarkInnerAddressIPv4"]
    assert f"DHCPRELEASE(br0) {address}" in log
    assert wait_for(lambda: address not in leases.read_text())
