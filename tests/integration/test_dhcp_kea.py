"""The DHCP client against a real Kea with a lease of a few seconds: renewals are seen."""

from __future__ import annotations

import ipaddress
import random

import trio
from helpers.dhcp import (
    addressing_driver,
    bound,
    first_lease,
    make_client,
    open_sockets,
    second_server,
    stop,
    uplink_sockets,
)
from sandbox import SITE_NET, sh, start_kea

from dhcp.client import Client
from dhcp.events import LeaseLost, LeaseRenewed, Transmit
from dhcp.options import MessageType
from dhcp.trio_driver import Driver


async def test_the_lease_is_renewed_again_and_again_at_t1(sandbox, host):
    log, _ = start_kea(sandbox)
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = addressing_driver(host, socks, seen, timeout_s=15, renew_retry_min_s=0.5)
        async with bound(driver) as lease:
            assert lease.lifetime_s == 6 and lease.t1_s == 2
            await trio.sleep(7.5)  # past one whole lifetime: only renewals keep it
            assert driver.lease is not None and driver.lease.address == lease.address
            await driver.release()
    renewals = [a for a in seen if isinstance(a, LeaseRenewed)]
    assert len(renewals) >= 3
    assert log.read_text().count("DHCP4_LEASE_ALLOC") >= 1 + len(renewals)


async def test_server_gone_the_client_rebinds_to_a_second_server(sandbox, host):
    _, first = start_kea(sandbox, lifetime=8)
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = addressing_driver(host, socks, seen, timeout_s=15, renew_retry_min_s=0.5)
        async with bound(driver) as lease:
            stop(first)
            start_kea(sandbox, lifetime=8, netns=second_server(sandbox), iface="lan", tag="kea2")
            await trio.sleep(7)  # T2 is 4 s: rebinding reaches the second server
            assert driver.lease is not None
            assert str(driver.lease.server_id).endswith(".2")
            assert driver.lease.address == lease.address
    assert not any(isinstance(a, LeaseLost) for a in seen)


async def test_all_servers_gone_the_lease_expires_and_the_address_goes(sandbox, host):
    _, server = start_kea(sandbox, lifetime=4)
    seen: list = []
    with uplink_sockets(host) as socks:
        driver = addressing_driver(host, socks, seen, timeout_s=30, renew_retry_min_s=0.5)
        async with bound(driver) as lease:
            stop(server)
            await trio.sleep(5)
    lost = [a for a in seen if isinstance(a, LeaseLost)]
    assert [a.reason for a in lost] == ["expired"] and lost[0].lease.address == lease.address
    addrs = sh("ip", "-o", "addr", "show", "dev", "uplink", netns=host.netns).stdout
    assert str(lease.address) not in addrs


async def test_a_nak_sends_the_client_back_to_init_for_a_new_address(sandbox, host):
    _, first = start_kea(sandbox, lifetime=60)
    seen: list = []
    with uplink_sockets(host) as socks:
        old = make_client(socks.mac, timeout_s=15)
        lease = await first_lease(Driver(old, socks))
        stop(first)  # the server comes back owning other addresses only, authoritatively
        other = (ipaddress.IPv4Address(f"{SITE_NET}.200"), ipaddress.IPv4Address(f"{SITE_NET}.210"))
        start_kea(sandbox, lifetime=60, tag="kea-again", pool=other, authoritative=True)
        again = Client(old.config, rng=random.Random(), remembered=lease)
        new = await first_lease(Driver(again, socks, on_action=seen.append))
    assert other[0] <= new.address <= other[1]
    sent = [a.message.message_type for a in seen if isinstance(a, Transmit)]
    assert sent[:2] == [MessageType.REQUEST, MessageType.DISCOVER]  # NAKed, then INIT


async def test_init_reboot_gets_the_remembered_address_back(sandbox, host):
    start_kea(sandbox, lifetime=60)
    seen: list = []
    with uplink_sockets(host) as socks:
        first = make_client(socks.mac, timeout_s=15)
        lease = await first_lease(Driver(first, socks))
        again = Client(first.config, rng=random.Random(), remembered=lease)
        second = await first_lease(Driver(again, socks, on_action=seen.append))
    assert second.address == lease.address
    sent = [a.message.message_type for a in seen if isinstance(a, Transmit)]
    assert sent == [MessageType.REQUEST]  # no DISCOVER: INIT-REBOOT straight to REQUEST


async def test_fifty_clients_at_once_all_get_distinct_addresses(sandbox, host):
    start_kea(sandbox, lifetime=60)
    socks = [open_sockets(host.netns, "uplink") for _ in range(50)]
    leases = []
    try:

        async def one(i: int, s) -> None:
            client = make_client(s.mac, iaid=i, timeout_s=20)
            leases.append(await first_lease(Driver(client, s)))

        async with trio.open_nursery() as nursery:
            for i, s in enumerate(socks):
                nursery.start_soon(one, i, s)
    finally:
        for s in socks:
            s.close()
    assert len(leases) == 50 and len({lease.address for lease in leases}) == 50
