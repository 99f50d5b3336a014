"""The DHCP client (dhcp/) against a real server in the sandbox: dnsmasq, sockets on a host's
uplink, a client, a driver bound in a nursery, a second server namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import random
from collections.abc import AsyncIterator, Iterator

import trio
from sandbox import SITE_ADDR, SITE_NET, sh

from dhcp import options as opt
from dhcp.arp import FAST
from dhcp.client import Client, Config
from dhcp.events import LeaseBound, LeaseLost
from dhcp.lease import Lease
from dhcp.trio_driver import Driver, Sockets
from lark_async.backends import netns

POOL = (ipaddress.IPv4Address(f"{SITE_NET}.100"), ipaddress.IPv4Address(f"{SITE_NET}.150"))


def start_dnsmasq(sandbox, *extra: str, tag: str = "dnsmasq", authoritative: bool = True):
    """dnsmasq on the site bridge; its lease file (and log, with --log-dhcp) under the test's
    directory."""
    leases = sandbox.tmp / f"{tag}.leases"
    proc = sandbox.start_in(
        sandbox.site,
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--no-ping",
            "--interface=br0",
            "--bind-interfaces",
            *(["--dhcp-authoritative"] if authoritative else []),
            f"--dhcp-range={POOL[0]},{POOL[1]},2m",
            f"--dhcp-leasefile={leases}",
            f"--pid-file={sandbox.tmp / f'{tag}.pid'}",
            "--user=root",
            "--log-dhcp",
            f"--log-facility={sandbox.tmp / f'{tag}.log'}",
            *extra,
        ],
    )
    return leases, proc


def open_sockets(host_netns: str, ifname: str) -> Sockets:
    return netns.inside(host_netns, lambda: Sockets.open(ifname))


def make_client(mac: bytes, *, iaid: int = 1, **kw) -> Client:
    """A client with the RFC 4361 identity (``iaid``, the MAC's DUID), a quick first retry
    and the fast conflict probe."""
    kw.setdefault("probe", FAST)
    config = Config(
        chaddr=mac, client_id=opt.client_id(iaid, opt.duid_ll(mac)), retransmit_initial_s=0.5, **kw
    )
    return Client(config, rng=random.Random())


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


@contextlib.contextmanager
def uplink_sockets(host) -> Iterator[Sockets]:
    """The client's sockets on the host's uplink, closed when the test is done with them."""
    socks = open_sockets(host.netns, "uplink")
    try:
        yield socks
    finally:
        socks.close()


@contextlib.asynccontextmanager
async def bound(driver: Driver) -> AsyncIterator[Lease]:
    """The driver running, once it holds a lease; stopped (cancelled) when the block ends."""
    async with trio.open_nursery() as nursery:
        yield await nursery.start(driver.run)
        nursery.cancel_scope.cancel()


async def first_lease(driver: Driver) -> Lease:
    """The driver's lease once bound; the driver is stopped (cancelled) right after."""
    async with bound(driver) as lease:
        return lease


def addressing_driver(host, socks: Sockets, seen: list, **client_kw) -> Driver:
    """A driver of ``make_client(**client_kw)`` whose actions go to ``seen``, putting the
    address on the uplink and taking it off as Lark does (``recorder``)."""
    return Driver(make_client(socks.mac, **client_kw), socks, on_action=recorder(host, seen))
