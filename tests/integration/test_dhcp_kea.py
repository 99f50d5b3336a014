"""The DHCP client against a real Kea with a lease of a few seconds: renewals are seen."""

from __future__ import annotations

import ipaddress
import random

import trio
from helpers.dhcp import (
    make_client,
    open_sockets,
    recorder,
    second_server,
    stop,
)
from sandbox import SITE_NET, sh, start_kea

from dhcp import options as opt
from dhcp.arp import FAST
from dhcp.client import Client, Config
from dhcp.events import LeaseLost, LeaseRenewed, Transmit
from dhcp.options import MessageType
from dhcp.trio_driver import Driver


async def test_the_lease_is_renewed_again_and_again_at_t1(sandbox, host):
    log, _ = start_kea(sandbox)
    socks = open_sockets(host.netns, "uplink")
    seen: list = []
    try:
        client = make_client(socks.mac, timeout_s=15, renew_retry_min_s=0.5)
        driver = Driver(client, socks, on_action=recorder(host, seen), probe=FAST)
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
        driver = Driver(client, socks, on_action=recorder(host, seen), probe=FAST)
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
        driver = Driver(client, socks, on_action=recorder(host, seen), probe=FAST)
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


async def test_a_nak_sends_the_client_back_to_init_for_a_new_address(sandbox, host):
    _, first = start_kea(sandbox, lifetime=60)
    socks = open_sockets(host.netns, "uplink")
    try:
        old = make_client(socks.mac, timeout_s=15)
        async with trio.open_nursery() as nursery:
            lease = await nursery.start(Driver(old, socks, probe=FAST).run)
            nursery.cancel_scope.cancel()
        stop(first)  # the server comes back owning other addresses only, authoritatively
        other = (ipaddress.IPv4Address(f"{SITE_NET}.200"), ipaddress.IPv4Address(f"{SITE_NET}.210"))
        start_kea(sandbox, lifetime=60, tag="kea-again", pool=other, authoritative=True)
        seen: list = []
        again = Client(old.config, rng=random.Random(), remembered=lease)
        async with trio.open_nursery() as nursery:
            new = await nursery.start(Driver(again, socks, on_action=seen.append, probe=FAST).run)
            nursery.cancel_scope.cancel()
    finally:
        socks.close()
    assert other[0] <= new.address <= other[1]
    sent = [a.message.message_type for a in seen if isinstance(a, Transmit)]
    assert sent[:2] == [MessageType.REQUEST, MessageType.DISCOVER]  # NAKed, then INIT


async def test_init_reboot_gets_the_remembered_address_back(sandbox, host):
    start_kea(sandbox, lifetime=60)
    socks = open_sockets(host.netns, "uplink")
    try:
        first = make_client(socks.mac, timeout_s=15)
        async with trio.open_nursery() as nursery:
            lease = await nursery.start(Driver(first, socks, probe=FAST).run)
            nursery.cancel_scope.cancel()
        again = Client(first.config, rng=random.Random(), remembered=lease)
        seen: list = []
        async with trio.open_nursery() as nursery:
            second = await nursery.start(
                Driver(again, socks, on_action=seen.append, probe=FAST).run
            )
            nursery.cancel_scope.cancel()
    finally:
        socks.close()
    assert second.address == lease.address
    sent = [a.message.message_type for a in seen if isinstance(a, Transmit)]
    assert sent == [MessageType.REQUEST]  # no DISCOVER: INIT-REBOOT straight to REQUEST


async def test_fifty_clients_at_once_all_get_distinct_addresses(sandbox, host):
    start_kea(sandbox, lifetime=60)
    socks = [open_sockets(host.netns, "uplink") for _ in range(50)]
    leases = []
    try:

        async def one(i: int, s) -> None:
            config = Config(
                chaddr=s.mac,
                client_id=opt.client_id(i, opt.duid_ll(s.mac)),
                retransmit_initial_s=0.5,
                timeout_s=20,
            )
            async with trio.open_nursery() as nursery:
                leases.append(await nursery.start(Driver(Client(config), s, probe=FAST).run))
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for i, s in enumerate(socks):
                nursery.start_soon(one, i, s)
    finally:
        for s in socks:
            s.close()
    assert len(leases) == 50 and len({lease.address for lease in leases}) == 50
