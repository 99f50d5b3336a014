"""The DHCPv6 client (dhcp6/) against Kea's DHCPv6 server, with lifetimes of a few seconds:
lease and options, rapid commit, renewals, rebinding to a second server, release, and the
``dhcp-test -6`` tester."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import trio
from helpers.dhcp6 import (
    SECOND_ADDR6,
    bound,
    lease_lines,
    make_client,
    second_server,
    stop,
    uplink_sockets,
)
from sandbox import (
    KEA6_DNS,
    KEA6_DOMAINS,
    KEA6_POOL,
    SITE_ADDR,
    Host,
    netns_list,
    sh,
    start_kea6,
    wait_for,
)

from dhcp6 import Dhcp6Failed, LeaseBound, LeaseLost, LeaseRenewed, MessageType, Transmit
from dhcp6.trio_driver import Driver

POOL = tuple(ipaddress.IPv6Address(a) for a in KEA6_POOL)


def sent(seen: list) -> list[MessageType]:
    return [a.message.msg_type for a in seen if isinstance(a, Transmit)]


async def test_a_lease_from_the_pool_with_dns_servers_and_search_domains(sandbox, host):
    run_dir, _ = start_kea6(sandbox, rapid_commit=False, timers=(30, 45, 50, 60))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(), socks, on_action=seen.append)
        async with bound(driver) as lease:
            assert driver.source is not None and driver.source.is_link_local
            await driver.release()
    assert POOL[0] <= lease.address <= POOL[1]
    assert lease.dns_servers == tuple(ipaddress.IPv6Address(a) for a in KEA6_DNS)
    assert lease.domains == KEA6_DOMAINS
    assert (lease.t1_s, lease.t2_s, lease.valid_s) == (30, 45, 60)
    # four messages: SOLICIT, ADVERTISE, REQUEST, REPLY; then the RELEASE
    assert sent(seen) == [MessageType.SOLICIT, MessageType.REQUEST, MessageType.RELEASE]
    log = (run_dir / "kea.log").read_text()
    assert "DHCP6_LEASE_ADVERT" in log and "DHCP6_LEASE_ALLOC" in log


async def test_rapid_commit_gets_the_lease_in_one_round_trip(sandbox, host):
    run_dir, _ = start_kea6(sandbox, rapid_commit=True, timers=(30, 45, 50, 60))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(rapid_commit=True), socks, on_action=seen.append)
        async with bound(driver) as lease:
            await driver.release()
    first = next(i for i, a in enumerate(seen) if isinstance(a, LeaseBound))
    assert sent(seen[:first]) == [MessageType.SOLICIT]
    assert POOL[0] <= lease.address <= POOL[1]
    log = (run_dir / "kea.log").read_text()
    assert "DHCP6_LEASE_ADVERT" not in log and "DHCP6_LEASE_ALLOC" in log


async def test_without_rapid_commit_asked_the_server_advertises_first(sandbox, host):
    start_kea6(sandbox, rapid_commit=True, timers=(30, 45, 50, 60))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(rapid_commit=False), socks, on_action=seen.append)
        async with bound(driver):
            await driver.release()
    assert sent(seen) == [MessageType.SOLICIT, MessageType.REQUEST, MessageType.RELEASE]


async def test_the_lease_is_renewed_at_t1_and_kea_sees_each_renewal(sandbox, host):
    run_dir, _ = start_kea6(sandbox, timers=(2, 3, 5, 6))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(), socks, on_action=seen.append)
        async with bound(driver) as lease:
            assert lease.t1_s == 2 and lease.valid_s == 6
            await trio.sleep(7.5)  # past one whole lifetime: only renewals keep it
            assert driver.lease is not None and driver.lease.address == lease.address
            await driver.release()
    renewals = [a for a in seen if isinstance(a, LeaseRenewed)]
    assert len(renewals) >= 3
    assert sent(seen).count(MessageType.RENEW) >= len(renewals)
    assert not any(isinstance(a, LeaseLost) and a.reason != "released" for a in seen)
    log = (run_dir / "kea.log").read_text()
    assert log.count("DHCP6_LEASE_RENEW") >= len(renewals)
    rows = [r for r in lease_lines(run_dir) if r[0] == str(lease.address)]
    assert len(rows) >= 1 + len(renewals)  # the allocation, each renewal (and the release)


async def test_server_gone_the_client_rebinds_to_a_second_server(sandbox, host):
    _, first = start_kea6(sandbox, timers=(2, 3, 8, 10))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(), socks, on_action=seen.append)
        async with bound(driver) as lease:
            stop(first)
            other_dir, _ = start_kea6(
                sandbox,
                netns=second_server(sandbox),
                iface="lan",
                address=SECOND_ADDR6,
                tag="kea6b",
                server_id="05:06:07:08",
                timers=(2, 3, 8, 10),
            )
            assert await wait_until(lambda: driver.lease.server_duid != lease.server_duid, 8)
            assert driver.lease.address == lease.address
            await driver.release()
    assert MessageType.REBIND in sent(seen)
    assert not any(isinstance(a, LeaseLost) and a.reason != "released" for a in seen)
    assert "DHCP6_RELEASE_NA" in (other_dir / "kea.log").read_text()


async def wait_until(predicate, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.1)
        return True
    return False


async def test_release_is_seen_by_kea_and_the_lease_is_gone(sandbox, host):
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60))
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(), socks)
        async with bound(driver) as lease:
            await driver.release()
            assert driver.client.state.value == "RELEASED"
    log = (run_dir / "kea.log").read_text()
    assert "DHCP6_RELEASE_NA" in log and str(lease.address) in log
    rows = [r for r in lease_lines(run_dir) if r[0] == str(lease.address)]
    assert rows[-1][2] == "0"  # the last row of the address: valid lifetime 0, removed


async def test_release_after_the_driver_was_cancelled_still_reaches_kea(sandbox, host):
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60))
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(), socks)
        async with bound(driver):
            pass
        await driver.release()
    assert "DHCP6_RELEASE_NA" in (run_dir / "kea.log").read_text()


async def test_no_server_the_driver_gives_up_within_its_timeout(sandbox, host):
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(timeout_s=1.5), socks)
        await driver.wait_link_local()  # (the new uplink's DAD is not the client's time)
        t0 = trio.current_time()
        try:
            await driver.run()
        except Dhcp6Failed as exc:
            assert str(exc) == "no lease after 1.5 s: no server answered"
        else:
            raise AssertionError("a lease with no server")
        assert trio.current_time() - t0 < 3


def run_tester(sandbox, host, *flags: str, timeout: float = 60):
    return sandbox.run_agent(host, "-6", *flags, verb="dhcp-test", timeout=timeout)


def test_dhcp_test_6_prints_the_lease_and_releases_it(sandbox, host):
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60))
    r = run_tester(sandbox, host, "--interface", "uplink", "--json")
    assert r.returncode == 0, r.stderr
    values = json.loads(r.stdout)
    address = ipaddress.IPv6Address(values["LarkInnerAddressIPv6"])
    assert POOL[0] <= address <= POOL[1]
    assert values["LarkDHCPv6LeaseLifetime"] == 60
    assert values["LarkDHCPv6DNSServers"] == ",".join(KEA6_DNS)
    assert values["LarkDHCPv6Domains"] == ",".join(KEA6_DOMAINS)
    assert wait_for(lambda: "DHCP6_RELEASE_NA" in (run_dir / "kea.log").read_text())
    rows = [r for r in lease_lines(run_dir) if r[0] == str(address)]
    assert rows[-1][2] == "0"


def test_dhcp_test_6_errors_are_one_line(sandbox, host):
    r = run_tester(sandbox, host, "--interface", "uplink", "--timeout", "1.5")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        "lark-agent: error: no DHCPv6 lease on uplink: no lease after 1.5 s: no server answered"
    )
    r = run_tester(sandbox, host, "--interface", "nope0")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        "lark-agent: error: interface nope0 does not exist in this network namespace"
    )


def test_dhcp_test_6_when_every_server_refuses_says_so(sandbox, host):
    """A pool of one address, held by a tester on another host: the next one is refused."""
    start_kea6(sandbox, pool=(KEA6_POOL[0], KEA6_POOL[0]), timers=(30, 45, 50, 60))
    other = sandbox.add_host()
    holder = subprocess.Popen(
        sandbox.agent_argv(
            other, "-6", "--interface", "uplink", "--json", "--hold", "8", verb="dhcp-test"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        held = json.loads(sandbox.read_line(holder.stdout, 15))
        assert held["LarkInnerAddressIPv6"] == KEA6_POOL[0]
        r = run_tester(sandbox, host, "--interface", "uplink", "--timeout", "2")
    finally:
        holder.wait(20)
    assert holder.returncode == 0, holder.stderr.read()
    assert r.returncode == 125
    line = r.stderr.strip()
    assert line.startswith("lark-agent: error: no DHCPv6 lease on uplink: no lease after 2 s: ")
    assert "said NO_ADDRS_AVAIL" in line and len(line.splitlines()) == 1


def test_dhcp_test_6_on_a_bridge_uses_a_throwaway_port_and_removes_it(sandbox):
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60))
    site = Host(sandbox.site, SITE_ADDR)

    def throwaway() -> set[str]:  # the tester's namespaces only: other runs may be busy
        return {ns for ns in netns_list() if ns.startswith("lark-dt")}

    before = throwaway()
    r = run_tester(sandbox, site, "--bridge", "br0", "--json")
    assert r.returncode == 0, r.stderr
    address = ipaddress.IPv6Address(json.loads(r.stdout)["LarkInnerAddressIPv6"])
    assert POOL[0] <= address <= POOL[1]
    assert throwaway() == before
    assert " e_dt" not in sh("ip", "-o", "link", "show", netns=sandbox.site).stdout
    assert wait_for(lambda: "DHCP6_RELEASE_NA" in (run_dir / "kea.log").read_text())


async def test_a_leased_address_failing_dad_is_declined_to_kea(sandbox, host):
    """The site already uses the leased address: put on the uplink with DAD, it fails; the
    driver hears it from the kernel and the client DECLINEs it (RFC 8415 section 18.2.8)."""
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60))
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = Driver(make_client(), socks, on_action=seen.append)
        async with bound(driver) as lease:
            taken = f"{lease.address}/64"
            sh("ip", "addr", "add", taken, "dev", "br0", "nodad", netns=sandbox.site)
            try:
                sh("ip", "addr", "add", taken, "dev", "uplink", netns=host.netns)
                declined = [LeaseLost(lease, "declined")]
                assert await wait_until(lambda: [a for a in seen if a in declined], 5)
            finally:
                sh("ip", "addr", "del", taken, "dev", "uplink", netns=host.netns, check=False)
                sh("ip", "addr", "del", taken, "dev", "br0", netns=sandbox.site, check=False)
    assert MessageType.DECLINE in sent(seen)
    assert wait_for(lambda: "DECLINE" in (run_dir / "kea.log").read_text())
