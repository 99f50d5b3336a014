"""The DHCP client against a real Kea with a lease of a few seconds: renewals are seen."""

from __future__ import annotations

import json

import trio
from sandbox import SITE_ADDR, sh
from test_dhcp_dnsmasq import POOL, make_client, open_sockets, wait_for

from dhcp.events import LeaseBound, LeaseLost, LeaseRenewed
from dhcp.trio_driver import Driver


def start_kea(
    sandbox, lifetime: int = 6, netns: str | None = None, iface: str = "br0", tag: str = "kea"
):
    """Kea in the site namespace (or ``netns``), its files under the test's directory."""
    run_dir = sandbox.tmp / tag
    run_dir.mkdir()
    log = run_dir / "kea.log"
    conf = run_dir / "kea-dhcp4.conf"
    conf.write_text(
        json.dumps(
            {
                "Dhcp4": {
                    "interfaces-config": {"interfaces": [iface], "dhcp-socket-type": "raw"},
                    "lease-database": {"type": "memfile", "persist": False},
                    "valid-lifetime": lifetime,
                    "renew-timer": lifetime // 3,
                    "rebind-timer": lifetime // 2,
                    "subnet4": [
                        {
                            "id": 1,
                            "subnet": f"{SITE_ADDR.rsplit('.', 1)[0]}.0/24",
                            "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}],
                            "option-data": [{"name": "routers", "data": SITE_ADDR}],
                        }
                    ],
                    "loggers": [
                        {
                            "name": "kea-dhcp4",
                            "severity": "INFO",
                            "output_options": [{"output": str(log)}],
                        }
                    ],
                }
            }
        )
    )
    proc = sandbox.start_in(
        netns or sandbox.site,
        [
            "env",
            f"KEA_PIDFILE_DIR={run_dir}",
            f"KEA_LOCKFILE_DIR={run_dir}",
            "kea-dhcp4",
            "-c",
            str(conf),
        ],
    )
    assert wait_for(lambda: log.exists() and "DHCP4_STARTED" in log.read_text(), 10), proc
    return log, proc


def second_server(sandbox) -> str:
    """Another namespace on the site bridge, at .2, for a second DHCP server."""
    ns = f"{sandbox.prefix}-srv2"
    sh("ip", "netns", "add", ns)
    sh(
        "ip",
        "link",
        "add",
        "up-srv2",
        "type",
        "veth",
        "peer",
        "name",
        "lan",
        "netns",
        ns,
        netns=sandbox.site,
    )
    sh("ip", "link", "set", "up-srv2", "master", "br0", "up", netns=sandbox.site)
    sh("ip", "addr", "add", f"{SITE_ADDR.rsplit('.', 1)[0]}.2/24", "dev", "lan", netns=ns)
    sh("ip", "link", "set", "lan", "up", netns=ns)
    return ns


def stop(proc) -> None:
    proc.terminate()
    proc.wait(10)


async def hold(driver: Driver, seconds: float) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


def recorder(host, seen: list):
    """Record the client's actions and, as Lark does, put the address on the link and take
    it off again when the lease is lost."""

    def on_action(action):
        seen.append(action)
        if isinstance(action, LeaseBound):
            sh("ip", "addr", "add", f"{action.lease.address}/24", "dev", "uplink", netns=host.netns)
        if isinstance(action, LeaseLost):
            sh(
                "ip",
                "addr",
                "del",
                f"{action.lease.address}/24",
                "dev",
                "uplink",
                netns=host.netns,
                check=False,
            )

    return on_action


async def test_the_lease_is_renewed_again_and_again_at_t1(sandbox, host):
    log, _ = start_kea(sandbox)
    socks = open_sockets(host.netns, "uplink")
    seen: list = []
    try:
        client = make_client(socks.mac, timeout_s=15, renew_retry_min_s=0.5)
        driver = Driver(client, socks, on_action=recorder(host, seen))
        async with trio.open_nursery() as nursery:
            lease = await nursery.start(driver.run)
            assert lease.lifetime_s == 6 and lease.t1_s == 2
            await trio.sleep(7.5)  # past one whole lifetime: only renewals keep it
            assert driver.lease is not None and driver.lease.address == lease.address
            await driver.release()
            nursery.cancel_scope.cancel()
    finally:
        socks.close()
    renewals = [a for a in seen if isinstance(a, LeaseRenewed)]
    assert len(renewals) >= 3
    assert log.read_text().count("DHCP4_LEASE_ALLOC") >= 1 + len(renewals)


async def test_server_gone_the_client_rebinds_to_a_second_server(sandbox, host):
    _, first = start_kea(sandbox, lifetime=8)
    socks = open_sockets(host.netns, "uplink")
    seen: list = []
    try:
        client = make_client(socks.mac, timeout_s=15, renew_retry_min_s=0.5)
        driver = Driver(client, socks, on_action=recorder(host, seen))
        async with trio.open_nursery() as nursery:
            lease = await nursery.start(driver.run)
            stop(first)
            start_kea(sandbox, lifetime=8, netns=second_server(sandbox), iface="lan", tag="kea2")
            await trio.sleep(7)  # T2 is 4 s: rebinding reaches the second server
            assert driver.lease is not None
            assert str(driver.lease.server_id).endswith(".2")
            assert driver.lease.address == lease.address
            nursery.cancel_scope.cancel()
    finally:
        socks.close()
    assert not any(isinstance(a, LeaseLost) for a in seen)


async def test_all_servers_gone_the_lease_expires_and_the_address_goes(sandbox, host):
    _, server = start_kea(sandbox, lifetime=4)
    socks = open_sockets(host.netns, "uplink")
    seen: list = []
    try:
        client = make_client(socks.mac, timeout_s=30, renew_retry_min_s=0.5)
        driver = Driver(client, socks, on_action=recorder(host, seen))
        async with trio.open_nursery() as nursery:
            lease = await nursery.start(driver.run)
            stop(server)
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    finally:
        socks.close()
    lost = [a for a in seen if isinstance(a, LeaseLost)]
    assert [a.reason for a in lost] == ["expired"] and lost[0].lease.address == lease.address
    addrs = sh("ip", "-o", "addr", "show", "dev", "uplink", netns=host.netns).stdout
    assert str(lease.address) not in addrs
