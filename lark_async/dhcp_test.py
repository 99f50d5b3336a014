"""``lark-agent dhcp-test``: Lark's DHCP client on one interface, for an admin to try."""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time

import trio

from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.events import Action, LeaseRenewed
from dhcp.lease import Lease
from dhcp.trio_driver import DhcpFailed, Driver, Sockets

from . import ads
from .backends import netns, rtnl
from .errors import LarkError, ResourceError, map_errors


class DhcpTestError(LarkError):
    """No lease (no server, NAK after NAK, timeout)."""


def lease_attributes(lease: Lease, mac: bytes, now_monotonic: float) -> dict[str, object]:
    """The lease in the names Lark publishes (DESIGN.md section 3)."""
    start_epoch = time.time() - (now_monotonic - lease.start)
    values: dict[str, object] = {
        "LarkInnerAddressIPv4": str(lease.address),
        "LarkSubnetMask": str(lease.network.netmask),
        "LarkDHCPServer": str(lease.server_id),
        "LarkDHCPLeaseLifetime": -1 if lease.lifetime_s == float("inf") else int(lease.lifetime_s),
        "LarkDHCPLeaseStart": int(start_epoch),
        "LarkDHCPMacAddress": mac.hex(":"),
    }
    gateway = next((gw for net, gw in lease.routes if net.prefixlen == 0), None)
    if gateway is None and lease.routers:
        gateway = lease.routers[0]
    if gateway is not None:
        values["LarkGateway"] = str(gateway)
    if lease.hostname:
        values["LarkHostname"] = lease.hostname
    return values


def _print(values: dict[str, object], as_json: bool) -> None:
    text = json.dumps(values, sort_keys=True) + "\n" if as_json else ads.format_old(values) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()


def run(
    ifname: str, as_json: bool, hold_s: float, timeout_s: float, vendor: bytes, hostname: str | None
) -> int:
    try:
        ifindex = socket.if_nametoindex(ifname)
    except OSError as exc:
        raise ResourceError(f"interface {ifname} does not exist in this network namespace") from exc
    with map_errors(f"open a raw socket on {ifname}"):
        sockets = Sockets.open(ifname)
    return _acquire(sockets, ifindex, as_json, hold_s, timeout_s, vendor, hostname)


def run_on_bridge(
    bridge: str, as_json: bool, hold_s: float, timeout_s: float, vendor: bytes, hostname: str | None
) -> int:
    """Like the original lark_dhcp_client_tester: a throwaway namespace whose veth peer is
    attached to ``bridge``, so the lease is had the way a bridged job would have it."""
    try:
        bridge_index = socket.if_nametoindex(bridge)
    except OSError as exc:
        raise ResourceError(f"bridge {bridge} does not exist in this network namespace") from exc
    tag = f"dt{os.getpid() % 100000}"
    ns_name, outer, inner = f"lark-{tag}", f"e_{tag}", f"i_{tag}"

    made: list[str] = []  # only what we created is removed afterwards

    def setup() -> Sockets:
        with rtnl.Channel() as host:
            ns_fd, channel = netns.create_netns(ns_name)  # this thread is now inside it
            made.append("netns")
            try:
                with channel:
                    channel.request(rtnl.set_up(1, "lo"))
                    host.request(rtnl.new_veth(outer, inner, ns_fd))
                    made.append("veth")
                    host.request(rtnl.set_master(host.index(outer), bridge_index, outer))
                    channel.request(rtnl.set_up(channel.index(inner), inner))
            finally:
                os.close(ns_fd)
            return Sockets.open(inner)

    try:
        with map_errors(f"set up a test interface on {bridge}"):
            sockets = netns.in_fresh_thread(setup)
        return _acquire(sockets, bridge_index, as_json, hold_s, timeout_s, vendor, hostname)
    finally:
        if "veth" in made:
            netns.discard_link(outer)
        if "netns" in made:
            netns.discard_netns(ns_name)


def _acquire(
    sockets: Sockets,
    ifindex: int,
    as_json: bool,
    hold_s: float,
    timeout_s: float,
    vendor: bytes,
    hostname: str | None,
) -> int:
    try:
        # one identity per (interface, process): two testers never share a client id
        iaid = (ifindex << 16 ^ os.getpid()) & 0xFFFFFFFF
        config = Config(
            chaddr=sockets.mac,
            client_id=opt.client_id(iaid, opt.duid_ll(sockets.mac)),
            vendor_class=vendor,
            hostname=hostname,
            timeout_s=timeout_s,
            retransmit_initial_s=1.0,
        )
        return trio.run(_session, Client(config, rng=random.Random()), sockets, as_json, hold_s)
    finally:
        sockets.close()


async def _session(client: Client, sockets: Sockets, as_json: bool, hold_s: float) -> int:
    def show(action: Action) -> None:
        if isinstance(action, LeaseRenewed):
            print("# renewed", file=sys.stderr)
            _print(lease_attributes(action.lease, sockets.mac, trio.current_time()), as_json)

    driver = Driver(client, sockets, on_action=show)
    async with trio.open_nursery() as nursery:
        try:
            lease = await nursery.start(driver.run)
        except DhcpFailed as exc:
            raise DhcpTestError(f"no DHCP lease on {sockets.ifname}: {exc}") from exc
        _print(lease_attributes(lease, sockets.mac, trio.current_time()), as_json)
        await trio.sleep(hold_s)
        with trio.CancelScope(shield=True):
            await driver.release()
        nursery.cancel_scope.cancel()
    return 0
