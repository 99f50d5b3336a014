"""The DHCPv6 client (dhcp6/) against a real Kea in the sandbox: sockets on a host's uplink
opened in its namespace, a client with its own DUID, a driver bound in a nursery, a second
server namespace."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterator

import trio
from sandbox import SITE_NET6, sh

from dhcp6 import Client, Config, Lease, derive_iaid, derive_job_duid
from dhcp6.trio_driver import Driver, Sockets
from lark_async.backends import netns


def open_sockets(host_netns: str, ifname: str = "uplink") -> Sockets:
    return netns.inside(host_netns, lambda: Sockets.open(ifname))


@contextlib.contextmanager
def uplink_sockets(host) -> Iterator[Sockets]:
    socks = open_sockets(host.netns)
    try:
        yield socks
    finally:
        socks.close()


def make_client(identity: str = "job-1", **kw) -> Client:
    """A client with a DUID-UUID of ``identity``, no initial SOLICIT delay."""
    duid = derive_job_duid(identity)
    kw.setdefault("solicit_delay_max_s", 0.0)
    kw.setdefault("timeout_s", 15.0)
    return Client(Config(duid=duid, iaid=derive_iaid(duid), **kw), rng=random.Random())


@contextlib.asynccontextmanager
async def bound(driver: Driver) -> AsyncIterator[Lease]:
    """The driver running, once it holds a lease; stopped (cancelled) when the block ends."""
    async with trio.open_nursery() as nursery:
        yield await nursery.start(driver.run)
        nursery.cancel_scope.cancel()


def second_server(sandbox) -> str:
    """Another namespace on the site bridge (its ``lan`` gets ``SITE_NET6::2`` from
    start_kea6), for a second DHCPv6 server."""
    ns = f"{sandbox.prefix}-srv6"
    sh("ip", "netns", "add", ns)
    sh(
        "ip",
        "link",
        "add",
        "up-srv6",
        "type",
        "veth",
        "peer",
        "name",
        "lan",
        "netns",
        ns,
        netns=sandbox.site,
    )
    sh("ip", "link", "set", "up-srv6", "master", "br0", "up", netns=sandbox.site)
    sh("ip", "link", "set", "lo", "up", netns=ns)
    sh("ip", "link", "set", "lan", "up", netns=ns)
    return ns


SECOND_ADDR6 = f"{SITE_NET6}::2"


def stop(proc) -> None:
    proc.terminate()
    proc.wait(10)


def lease_lines(run_dir) -> list[list[str]]:
    """Kea's memfile (leases6.csv) rows after its header: address, duid, valid_lifetime,
    expire, ... (each change appends a row; a removed lease is a row with lifetime 0)."""
    path = run_dir / "leases6.csv"
    if not path.exists():
        return []
    return [line.split(",") for line in path.read_text().splitlines()[1:] if line]
