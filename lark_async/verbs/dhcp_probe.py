"""``lark-agent dhcp-test``: Lark's DHCP client on one interface, for an admin to try; with
``-6``, its DHCPv6 client (dhcp6/), loaded only then."""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import trio

from dhcp import arp
from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.errors import DhcpFailed
from dhcp.events import Action, LeaseBound, LeaseLost, LeaseRenewed
from dhcp.trio_driver import Driver, Sockets

from ..backends import netns
from ..backends.lan.job_address import lease_attributes
from ..backends.lan.lease_link import LeaseOnLink
from ..backends.netlink import rtnl
from ..decide.names import external_interface, internal_interface, netns_name
from ..errors import LarkError, ResourceError, map_errors
from .common import need_root

if TYPE_CHECKING:
    import dhcp6
    from dhcp6.trio_driver import Sockets as Sockets6


class DhcpTestError(LarkError):
    """No lease (no server, NAK after NAK, timeout)."""


def _print(values: dict[str, object], as_json: bool) -> None:
    if as_json:
        text = json.dumps(values, sort_keys=True) + "\n"
    else:
        from ..decide import ads  # (classad2 costs tens of ms of start-up: not for JSON)

        text = ads.format_old(values) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()


@dataclass(frozen=True)
class Options:
    as_json: bool = False
    hold_s: float = 0.0
    timeout_s: float = 30.0
    vendor: bytes = b"lark"
    hostname: str | None = None
    probe: arp.ProbeConfig | None = arp.FAST


PROBES = {"rfc": arp.ProbeConfig(), "fast": arp.FAST, "off": None}


def run(ifname: str, options: Options) -> int:
    try:
        ifindex = socket.if_nametoindex(ifname)
    except OSError as exc:
        raise ResourceError(f"interface {ifname} does not exist in this network namespace") from exc
    with map_errors(f"open a raw socket on {ifname}"):
        sockets = Sockets.open(ifname, arp_probe=options.probe is not None)
    return _acquire(sockets, ifindex, options, None)


def run_on_bridge(bridge: str, options: Options) -> int:
    """Like the original lark_dhcp_client_tester: a throwaway namespace whose veth peer is
    attached to ``bridge``, so the lease is had the way a bridged job would have it. The
    lease is put on the throwaway interface, so unicast renewals are answered."""

    def use(sockets: Sockets, inner: str, channel: rtnl.Channel) -> int:
        bridge_index = socket.if_nametoindex(bridge)
        return _acquire(sockets, bridge_index, options, LeaseOnLink(channel, inner))

    return _on_throwaway_port(
        bridge,
        lambda inner: None,
        lambda inner: Sockets.open(inner, arp_probe=options.probe is not None),
        use,
    )


def run6_on_bridge(bridge: str, options: Options) -> int:
    """``run_on_bridge`` for DHCPv6: the throwaway interface's link-local address is made
    without duplicate address detection (the interface and its MAC are new), so the client
    speaks at once; the leased address is not configured (replies come to the link-local
    address)."""
    from dhcp6.trio_driver import Sockets as Sockets6

    def no_dad(inner: str) -> None:  # (inside the throwaway namespace, before it is up)
        with open(f"/proc/sys/net/ipv6/conf/{inner}/accept_dad", "w") as knob:
            knob.write("0")

    def use(sockets: Sockets6, inner: str, channel: rtnl.Channel) -> int:
        return _acquire6(sockets, options)

    return _on_throwaway_port(bridge, no_dad, Sockets6.open, use)


S = TypeVar("S")


def _on_throwaway_port(
    bridge: str,
    prepare: Callable[[str], None],
    open_sockets: Callable[[str], S],
    use: Callable[[S, str, rtnl.Channel], int],
) -> int:
    """A throwaway namespace and veth whose outer end is a port of ``bridge``: ``prepare``
    runs inside it before the inner end is up, ``open_sockets`` after; ``use`` runs here
    with them and a netlink channel inside it. Everything made is removed afterwards."""
    try:
        bridge_index = socket.if_nametoindex(bridge)
    except OSError as exc:
        raise ResourceError(f"bridge {bridge} does not exist in this network namespace") from exc
    tag = f"dt{os.getpid() % 100000}"
    ns_name, outer, inner = netns_name(tag), external_interface(tag), internal_interface(tag)

    made: list[str] = []  # only what we created is removed afterwards

    def setup() -> tuple[S, rtnl.Channel]:
        with rtnl.Channel() as host:
            ns_fd, channel = netns.create_netns(ns_name)  # this thread is now inside it
            made.append("netns")
            try:
                channel.request(rtnl.set_up(1, "lo"))
                host.request(rtnl.new_veth(outer, inner, ns_fd))
                made.append("veth")
                host.request(rtnl.set_master(host.index(outer), bridge_index, outer))
                prepare(inner)
                channel.request(rtnl.set_up(channel.index(inner), inner))
                return open_sockets(inner), channel
            except BaseException:
                channel.close()
                raise
            finally:
                os.close(ns_fd)

    try:
        with map_errors(f"set up a test interface on {bridge}"):
            sockets, channel = netns.in_fresh_thread(setup)
        with channel:
            return use(sockets, inner, channel)
    finally:
        if "veth" in made:
            netns.discard_link(outer)
        if "netns" in made:
            netns.discard_netns(ns_name)


def _acquire(sockets: Sockets, ifindex: int, options: Options, on_link: LeaseOnLink | None) -> int:
    try:
        # one identity per (interface, process): two testers never share a client id
        iaid = (ifindex << 16 ^ os.getpid()) & 0xFFFFFFFF
        config = Config(
            chaddr=sockets.mac,
            client_id=opt.client_id(iaid, opt.duid_ll(sockets.mac)),
            vendor_class=options.vendor,
            hostname=options.hostname,
            timeout_s=options.timeout_s,
            probe=options.probe,
        )
        client = Client(config, rng=random.Random())
        return trio.run(_session, client, sockets, options, on_link)
    finally:
        sockets.close()


async def _session(
    client: Client, sockets: Sockets, options: Options, on_link: LeaseOnLink | None
) -> int:
    def show(action: Action) -> None:
        if on_link is not None and isinstance(action, LeaseBound | LeaseRenewed | LeaseLost):
            with map_errors(f"configure the lease on {on_link.ifname}"):
                on_link.apply(None if isinstance(action, LeaseLost) else action.lease)
        if isinstance(action, LeaseRenewed):
            print("# renewed", file=sys.stderr)
            _print(
                lease_attributes(action.lease, sockets.mac, trio.current_time()), options.as_json
            )
        elif isinstance(action, LeaseLost) and action.reason != "released":
            print(f"# lease on {action.lease.address} lost ({action.reason})", file=sys.stderr)

    driver = Driver(client, sockets, on_action=show)
    async with trio.open_nursery() as nursery:
        try:
            lease = await nursery.start(driver.run)
        except DhcpFailed as exc:
            raise DhcpTestError(f"no DHCP lease on {sockets.ifname}: {exc}") from exc
        _print(lease_attributes(lease, sockets.mac, trio.current_time()), options.as_json)
        await trio.sleep(options.hold_s)
        with trio.CancelScope(shield=True):
            await driver.release()
        nursery.cancel_scope.cancel()
    return 0


def run6(ifname: str, options: Options) -> int:
    """DHCPv6 on ``ifname`` as it is: from its link-local address, UDP port 546."""
    from dhcp6.trio_driver import Sockets as Sockets6

    try:
        socket.if_nametoindex(ifname)
    except OSError as exc:
        raise ResourceError(f"interface {ifname} does not exist in this network namespace") from exc
    with map_errors(f"open the DHCPv6 client's socket (UDP port 546) on {ifname}"):
        sockets = Sockets6.open(ifname)
    return _acquire6(sockets, options)


def _acquire6(sockets: Sockets6, options: Options) -> int:
    from dhcp6 import Client as Client6
    from dhcp6 import Config as Config6
    from dhcp6 import derive_iaid, derive_job_duid

    try:
        # one identity per (node, interface, process): two testers never share a DUID
        identity = f"lark-agent dhcp-test {socket.gethostname()} {sockets.ifname} {os.getpid()}"
        duid = derive_job_duid(identity)
        config = Config6(
            duid=duid, iaid=derive_iaid(duid), solicit_delay_max_s=0.0, timeout_s=options.timeout_s
        )
        return trio.run(_session6, Client6(config, rng=random.Random()), sockets, options)
    finally:
        sockets.close()


async def _session6(client: dhcp6.Client, sockets: Sockets6, options: Options) -> int:
    from dhcp6 import Dhcp6Error, LeaseLost, LeaseRenewed
    from dhcp6.trio_driver import Driver as Driver6

    from ..backends.lan.job_lease6 import lease6_attributes

    duid = client.config.duid

    def show(action: object) -> None:
        if isinstance(action, LeaseRenewed):
            print("# renewed", file=sys.stderr)
            _print(lease6_attributes(action.lease, duid, trio.current_time()), options.as_json)
        elif isinstance(action, LeaseLost) and action.reason != "released":
            print(f"# lease on {action.lease.address} lost ({action.reason})", file=sys.stderr)

    driver = Driver6(client, sockets, on_action=show)
    async with trio.open_nursery() as nursery:
        try:
            lease = await nursery.start(driver.run)
        except Dhcp6Error as exc:
            raise DhcpTestError(f"no DHCPv6 lease on {sockets.ifname}: {exc}") from exc
        _print(lease6_attributes(lease, duid, trio.current_time()), options.as_json)
        await trio.sleep(options.hold_s)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await driver.release()
        nursery.cancel_scope.cancel()
    return 0


def cmd_dhcp_test(args: argparse.Namespace) -> int:
    """``lark-agent dhcp-test``: on an interface, or on a throwaway port of a bridge; DHCPv4,
    or DHCPv6 with ``-6``."""
    need_root()
    if args.ipv6:
        probe, where = (run6, args.interface) if args.interface else (run6_on_bridge, args.bridge)
    else:
        probe, where = (run, args.interface) if args.interface else (run_on_bridge, args.bridge)
    options = Options(
        as_json=args.json,
        hold_s=args.hold,
        timeout_s=args.timeout,
        vendor=args.vendor_class.encode(),
        hostname=args.hostname,
        probe=PROBES[args.probe],
    )
    return probe(where, options)
