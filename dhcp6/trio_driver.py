"""The trio driver: the only module of dhcp6/ that owns sockets and a clock.

It feeds the sans-IO Client facts (packets, its one deadline, a release, a leased address
whose DAD failed) and carries out its orders. The client speaks UDP from port 546 on its
interface's link-local address to All_DHCP_Relay_Agents_and_Servers (ff02::1:2, port 547,
hop limit 1: RFC 8415 sections 7.1 and 14); servers answer it there by unicast. The sockets
are plain ones handed in (``Sockets``), so a caller opens them in the job's network
namespace (a socket keeps the namespace it was made in) and runs the driver from anywhere.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

from . import ifaddr
from .client import Client, State
from .errors import Dhcp6Error, Dhcp6Failed
from .events import (
    CLIENT_PORT,
    SERVER_PORT,
    Action,
    DadFailed,
    GaveUp,
    Input,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Lease
from .message import encode

__all__ = ["Dhcp6Failed", "Driver", "LinkLocalError", "Sockets"]

log = logging.getLogger("dhcp6.driver")
SO_BINDTODEVICE = 25
LINK_LOCAL_WAIT_S = 5.0  # DAD (1 s by default, after up to 1 s of delay) with room to spare
RELEASE_WAIT_S = 2.0  # for the REPLY to a RELEASE before the link goes (section 18.2.7)
_MAX_PAYLOAD = 65535


class LinkLocalError(Dhcp6Error):
    """The interface has no link-local address to speak from (IPv6 off on it, DAD failed,
    or still tentative after the wait)."""


@dataclass
class Sockets:
    """The client's UDP socket on [::]:546 of one interface, and an rtnetlink socket that
    hears that namespace's IPv6 address changes. Open both in the interface's namespace."""

    ifname: str
    index: int
    udp: socket.socket
    rtnl: socket.socket

    @classmethod
    def open(cls, ifname: str) -> Sockets:
        """Open in the calling thread's network namespace (OSError when the interface is
        not there, or port 546 on it is taken by another client)."""
        index = socket.if_nametoindex(ifname)
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            nl.bind((0, ifaddr.RTMGRP_IPV6_IFADDR))
            udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        except BaseException:
            nl.close()
            raise
        try:
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            udp.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            udp.bind(("::", CLIENT_PORT))
        except BaseException:
            udp.close()
            nl.close()
            raise
        return cls(ifname, index, udp, nl)

    def close(self) -> None:
        self.udp.close()
        self.rtnl.close()


def render_pktinfo(source: ipaddress.IPv6Address, index: int) -> bytes:
    """``struct in6_pktinfo``: the source address and the interface to send from."""
    return source.packed + struct.pack("=I", index)


class Driver:
    """Runs one Client over one interface's Sockets until it stops: one loop in one task
    hands the client every fact and carries out its orders in order; readers only queue
    what they hear. ``run`` waits for the link-local address first (at most
    ``link_local_wait_s``), then acquires, hands the lease to ``task_status.started`` and
    keeps it until cancelled or released."""

    def __init__(
        self,
        client: Client,
        sockets: Sockets,
        on_action: Callable[[Action], None] | None = None,
        link_local_wait_s: float = LINK_LOCAL_WAIT_S,
    ) -> None:
        self.client = client
        self.sockets = sockets
        self.on_action = on_action or (lambda action: None)
        self.link_local_wait_s = link_local_wait_s
        self.source: ipaddress.IPv6Address | None = None
        self.lease: Lease | None = None
        self.failure: str | None = None
        self._udp = trio.socket.from_stdlib_socket(sockets.udp)
        self._nl = trio.socket.from_stdlib_socket(sockets.rtnl)
        self._to_loop, self._inbox = trio.open_memory_channel[Input | trio.Event](16)
        self._running = False
        self._release_done = trio.Event()
        self._seq = 0

    # -- the link-local address ------------------------------------------------------

    async def _dump(self) -> list[ifaddr.IfAddr]:
        self._seq += 1
        await self._nl.send(ifaddr.render_dump_request(self._seq))
        found: list[ifaddr.IfAddr] = []
        while True:
            try:
                data = await self._nl.recv(_MAX_PAYLOAD)
            except OSError as exc:  # notifications overflowed before: ask again
                if exc.errno != errno.ENOBUFS:
                    raise
                return await self._dump()
            addresses, done = ifaddr.parse_addresses(data)
            found += addresses
            if done:
                return found

    async def wait_link_local(self) -> ipaddress.IPv6Address:
        """The interface's link-local address once usable (not tentative): asked, then
        listened for; LinkLocalError when there is none within the wait."""
        name = self.sockets.ifname
        seen: ifaddr.IfAddr | None = None
        with trio.move_on_after(self.link_local_wait_s):
            while True:
                seen = ifaddr.link_local(await self._dump(), self.sockets.index)
                if seen is not None and seen.usable:
                    return seen.address
                if seen is not None and seen.dad_failed:
                    raise LinkLocalError(
                        f"the link-local address {seen.address} of {name} failed DAD"
                    )
                with trio.move_on_after(0.25):  # or sooner, when an address changes
                    await self._nl.recv(_MAX_PAYLOAD)
        if seen is None:
            raise LinkLocalError(f"{name} has no IPv6 link-local address (is IPv6 off on it?)")
        raise LinkLocalError(
            f"the link-local address {seen.address} of {name} is still tentative after "
            f"{self.link_local_wait_s:g} s"
        )

    # -- running -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Lease] = trio.TASK_STATUS_IGNORED) -> None:
        """Acquire, hand the lease to ``task_status.started``, then keep it until stopped.

        Raises Dhcp6Failed when no lease comes within the client's timeout, LinkLocalError
        when there is no link-local address to speak from.
        """
        self.source = await self.wait_link_local()
        started = False
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_udp)
                nursery.start_soon(self._read_addresses)
                await self._carry_out(self.client.handle(Started(trio.current_time())))
                while not self._stopped():
                    if self.lease is not None and not started:
                        started = True
                        task_status.started(self.lease)
                    await self._next_fact()
                nursery.cancel_scope.cancel()
        finally:
            self._running = False
            self._release_done.set()
        if self.failure is not None and not started:
            raise Dhcp6Failed(self.failure)

    def _stopped(self) -> bool:
        s = self.client.state
        return s is State.FAILED or (s is State.RELEASED and self.client.next_deadline is None)

    async def _next_fact(self) -> None:
        deadline = self.client.next_deadline
        got: Input | trio.Event | None = None
        with trio.move_on_at(float("inf") if deadline is None else deadline):
            got = await self._inbox.receive()
        if got is None:
            await self._carry_out(self.client.handle(TimerFired(trio.current_time())))
        elif isinstance(got, trio.Event):  # release(): its RELEASE is out
            await self._carry_out(self.client.handle(ReleaseRequested(trio.current_time())))
            got.set()
        else:
            await self._carry_out(self.client.handle(got))

    async def _read_udp(self) -> None:
        while True:
            payload, _peer = await self._udp.recvfrom(_MAX_PAYLOAD)
            await self._to_loop.send(PacketReceived(trio.current_time(), payload))

    async def _read_addresses(self) -> None:
        """RFC 8415 section 18.2.8: a leased address the caller put on the link and whose
        DAD failed is declined (the client ignores any other)."""
        while True:
            try:
                data = await self._nl.recv(_MAX_PAYLOAD)
            except OSError as exc:  # notifications overflowed while nobody read: go on
                if exc.errno != errno.ENOBUFS:
                    raise
                continue
            addresses, _ = ifaddr.parse_addresses(data)
            for a in addresses:
                if a.index == self.sockets.index and a.dad_failed and not a.gone:
                    await self._to_loop.send(DadFailed(trio.current_time(), a.address))

    async def release(self, wait_s: float = RELEASE_WAIT_S) -> None:
        """RELEASE the lease (section 18.2.7); call it before the link goes. Returns once
        the server answered, or after ``wait_s``. Handed to the loop while it runs; after it
        was cancelled (a job's nursery ends before its teardown) the driver carries the
        release out itself."""
        if not self._running:
            await self._carry_out(self.client.handle(ReleaseRequested(trio.current_time())))
            with trio.move_on_after(wait_s):
                while self.client.state is State.RELEASED and self.client.next_deadline is not None:
                    with trio.move_on_at(self.client.next_deadline):
                        payload, _peer = await self._udp.recvfrom(_MAX_PAYLOAD)
                        fact: Input = PacketReceived(trio.current_time(), payload)
                        await self._carry_out(self.client.handle(fact))
                        continue
                    await self._carry_out(self.client.handle(TimerFired(trio.current_time())))
            return
        sent = trio.Event()
        await self._to_loop.send(sent)
        await sent.wait()
        with trio.move_on_after(wait_s):
            await self._release_done.wait()

    async def _send(self, t: Transmit) -> None:
        """From the link-local address, out of the interface, to ff02::1:2 port 547."""
        assert self.source is not None
        ancillary = [
            (
                socket.IPPROTO_IPV6,
                socket.IPV6_PKTINFO,
                render_pktinfo(self.source, self.sockets.index),
            )
        ]
        dest = (str(t.dest), SERVER_PORT, 0, self.sockets.index)
        try:
            await self._udp.sendmsg([encode(t.message)], ancillary, 0, dest)
        except OSError as exc:
            # the link is down or gone: the exchange's retransmissions try again
            if exc.errno not in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV, errno.EADDRNOTAVAIL):
                raise
            log.info("cannot send %s on %s: %s", t.message.msg_type.name, self.sockets.ifname, exc)

    async def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                await self._send(action)
            elif isinstance(action, LeaseBound | LeaseRenewed):
                self.lease = action.lease
            elif isinstance(action, LeaseLost):
                self.lease = None
            elif isinstance(action, GaveUp):
                self.failure = action.reason
            self.on_action(action)
