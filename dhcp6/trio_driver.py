"""The trio driver: the only module of dhcp6/ that owns sockets and a clock.

It feeds the sans-IO Client facts (packets, its one deadline, a release, a leased address
whose DAD failed) and carries out its orders. The client speaks UDP from port 546 on its
interface's link-local address to All_DHCP_Relay_Agents_and_Servers (ff02::1:2, port 547,
hop limit 1: RFC 8415 sections 7.1 and 14); servers answer it there by unicast. The sockets
are plain ones handed in (``Sockets``), so a caller opens them in the job's network
namespace (a socket keeps the namespace it was made in) and runs the driver from anywhere.

Two ways to speak (``Link``): a UDP socket on the interface itself (``dhcp-test -6``), or,
for a host behind a bridge port that must not be trusted with its own lease (a bridged
job), from the bridge's side of that port (``PortSockets``, as dhcp/'s ``open_port``):
frames go into the bridge with the host's MAC and link-local address, and only what the
bridge sends out of the port is heard, which the host cannot forge.
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

from dhcp.bpf import Program, outgoing_only, packet_socket, send_socket

from . import frame, ifaddr
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

__all__ = ["Dhcp6Failed", "Driver", "LinkLocalError", "PortSockets", "Sockets"]

log = logging.getLogger("dhcp6.driver")
SO_BINDTODEVICE = 25
LINK_LOCAL_WAIT_S = 5.0  # DAD (1 s by default, after up to 1 s of delay) with room to spare
RELEASE_WAIT_S = 2.0  # for the REPLY to a RELEASE before the link goes (section 18.2.7)
_MAX_PAYLOAD = 65535
_DUMP_SEQ = 1  # (the kernel echoes it; replies are told apart by their kind, not by it)
ETH_P_ALL = 0x0003
SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_CSUMNOTREADY, TP_STATUS_CSUM_VALID = 1 << 3, 1 << 7
_AUX_SPACE = socket.CMSG_SPACE(32)


class LinkLocalError(Dhcp6Error):
    """The interface has no link-local address to speak from (IPv6 off on it, DAD failed,
    or still tentative after the wait)."""


def reply_filter(mac: bytes) -> Program:
    """Classic BPF: frames to ``mac`` carrying IPv6 whose next header is UDP to port 546 (a
    reply is never sent with extension headers; one that is, is not heard)."""
    hi, lo = struct.unpack("!IH", mac)
    drop = 11
    return [
        (0x20, 0, 0, 0),  # 0: destination MAC[0:4]
        (0x15, 0, drop - 2, hi),
        (0x28, 0, 0, 4),  # 2: destination MAC[4:6]
        (0x15, 0, drop - 4, lo),
        (0x28, 0, 0, 12),  # 4: ethertype
        (0x15, 0, drop - 6, frame.ETH_P_IPV6),
        (0x30, 0, 0, 14 + 6),  # 6: next header
        (0x15, 0, drop - 8, frame.IPPROTO_UDP),
        (0x28, 0, 0, 14 + 40 + 2),  # 8: UDP destination port
        (0x15, 0, drop - 10, CLIENT_PORT),
        (0x06, 0, 0, 0xFFFF),  # 10: accept
        (0x06, 0, 0, 0),  # 11: drop
    ]


@dataclass
class PortSockets:
    """A client for the host behind bridge port ``port`` whose MAC is ``mac``, from the
    bridge's side (open them in the bridge's namespace): ``raw`` hears what the bridge
    sends out of the port to that MAC, ``tx`` sends frames into ``bridge``."""

    port: str
    bridge: str
    mac: bytes
    raw: socket.socket
    tx: socket.socket

    @classmethod
    def open(cls, port: str, bridge: str, mac: bytes) -> PortSockets:
        raw = packet_socket(port, ETH_P_ALL, outgoing_only(reply_filter(mac)))
        try:
            raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            tx = send_socket()
        except BaseException:
            raw.close()
            raise
        return cls(port, bridge, mac, raw, tx)

    def closers(self) -> list[Callable[[], None]]:
        return [self.raw.close, self.tx.close]


@dataclass
class Sockets:
    """What the client needs on one interface, opened in the interface's namespace: an
    rtnetlink socket that hears that namespace's IPv6 address changes (the link-local to
    speak from, DAD of the leased ones), and either the client's UDP socket on [::]:546
    there (``open``) or a bridge port's sockets (``watch`` then ``port``)."""

    ifname: str
    index: int
    rtnl: socket.socket
    udp: socket.socket | None = None
    port: PortSockets | None = None

    @classmethod
    def watch(cls, ifname: str) -> Sockets:
        """Only the rtnetlink socket: give ``port`` before a Driver runs on them."""
        index = socket.if_nametoindex(ifname)
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            nl.bind((0, ifaddr.RTMGRP_IPV6_IFADDR))
        except BaseException:
            nl.close()
            raise
        return cls(ifname, index, nl)

    @classmethod
    def open(cls, ifname: str) -> Sockets:
        """Open in the calling thread's network namespace (OSError when the interface is
        not there, or port 546 on it is taken by another client)."""
        found = cls.watch(ifname)
        nl, index = found.rtnl, found.index
        try:
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
        found.udp = udp
        return found

    def close(self) -> None:
        for close in self.closers():
            close()

    def closers(self) -> list[Callable[[], None]]:
        """One call per socket: closing a packet socket waits out an RCU grace period, so a
        caller in a hurry runs these in parallel."""
        found = [self.rtnl.close]
        if self.udp is not None:
            found.append(self.udp.close)
        if self.port is not None:
            found += self.port.closers()
        return found


def render_pktinfo(source: ipaddress.IPv6Address, index: int) -> bytes:
    """``struct in6_pktinfo``: the source address and the interface to send from."""
    return source.packed + struct.pack("=I", index)


class UdpLink:
    """The interface's own UDP socket: the kernel builds the headers."""

    def __init__(self, sockets: Sockets) -> None:
        assert sockets.udp is not None
        self.sockets = sockets
        self.udp = trio.socket.from_stdlib_socket(sockets.udp)

    async def send(
        self, payload: bytes, source: ipaddress.IPv6Address, dest: ipaddress.IPv6Address
    ) -> None:
        index = self.sockets.index
        ancillary = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, render_pktinfo(source, index))]
        await self.udp.sendmsg([payload], ancillary, 0, (str(dest), SERVER_PORT, 0, index))

    async def receive(self) -> bytes:
        payload, _peer = await self.udp.recvfrom(_MAX_PAYLOAD)
        return bytes(payload)


class PortLink:
    """From the bridge's side of the host's port: whole frames, as the host."""

    def __init__(self, port: PortSockets) -> None:
        self.port = port
        self.raw = trio.socket.from_stdlib_socket(port.raw)
        self.tx = trio.socket.from_stdlib_socket(port.tx)

    async def send(
        self, payload: bytes, source: ipaddress.IPv6Address, dest: ipaddress.IPv6Address
    ) -> None:
        data = frame.build_udp(payload, self.port.mac, source, dest)
        await self.tx.sendto(data, (self.port.bridge, frame.ETH_P_IPV6))

    async def receive(self) -> bytes:
        while True:
            data, ancdata, _flags, _addr = await self.raw.recvmsg(_MAX_PAYLOAD, _AUX_SPACE)
            check_udp = True
            for level, kind, aux in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= 4:
                    status = struct.unpack_from("=I", aux)[0]
                    # offloaded: the checksum is filled in later, or the NIC checked it
                    check_udp = not status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID)
            payload = frame.parse_udp(data, check_udp=check_udp)
            if payload is not None:
                return payload


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
        self._link = PortLink(sockets.port) if sockets.port is not None else UdpLink(sockets)
        self._nl = trio.socket.from_stdlib_socket(sockets.rtnl)
        self._to_loop, self._inbox = trio.open_memory_channel[Input | trio.Event](16)
        self._running = False
        self._release_done = trio.Event()

    # -- the link-local address ------------------------------------------------------

    async def _dump(self) -> list[ifaddr.IfAddr]:
        """Every IPv6 address of the namespace as it is now. The dump comes with whatever
        notices the socket queued before it and while it ran: the socket queues each as it
        happens, so the last word on an address (a notice after the dump, or the dump after
        a notice) is its state now."""
        await self._nl.send(ifaddr.render_dump_request(_DUMP_SEQ))
        found: dict[tuple[int, ipaddress.IPv6Address], ifaddr.IfAddr] = {}
        while True:
            try:
                data = await self._nl.recv(_MAX_PAYLOAD)
            except OSError as exc:  # notifications overflowed before: ask again
                if exc.errno != errno.ENOBUFS:
                    raise
                return await self._dump()
            addresses, done = ifaddr.parse_addresses(data)
            for a in addresses:
                found[a.index, a.address] = a
            if done:
                return list(found.values())

    async def wait_link_local(self) -> ipaddress.IPv6Address:
        """The interface's link-local address once usable (not tentative): asked, then
        listened for; LinkLocalError when there is none within the wait (with no wait, the
        one usable now)."""
        name = self.sockets.ifname
        deadline = trio.current_time() + self.link_local_wait_s
        while True:
            seen = ifaddr.link_local(await self._dump(), self.sockets.index)
            if seen is not None and seen.usable:
                return seen.address
            if seen is not None and seen.dad_failed:
                raise LinkLocalError(f"the link-local address {seen.address} of {name} failed DAD")
            with trio.move_on_at(deadline):
                await self._address_changed()
                continue
            break
        if seen is None:
            raise LinkLocalError(f"{name} has no IPv6 link-local address (is IPv6 off on it?)")
        raise LinkLocalError(
            f"the link-local address {seen.address} of {name} is still tentative after "
            f"{self.link_local_wait_s:g} s"
        )

    async def _address_changed(self) -> None:
        """Until rtnetlink tells of a change to an IPv6 address. The kernel tells of every
        one (DAD done, an address added or gone), or, when its notices overflowed the
        socket, says so (ENOBUFS): either way, time to ask again."""
        try:
            await self._nl.recv(_MAX_PAYLOAD)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise

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
            payload = await self._link.receive()
            await self._to_loop.send(PacketReceived(trio.current_time(), payload))

    async def _read_addresses(self) -> None:
        """RFC 8415 section 18.2.8: a leased address the caller put on the link and whose
        DAD failed is declined (the client ignores any other). The kernel keeps a
        permanent address that failed, marked; one with lifetimes (as a lease's are put)
        it deletes, and the deletion says ``dadfailed``: either counts."""
        while True:
            try:
                data = await self._nl.recv(_MAX_PAYLOAD)
            except OSError as exc:  # notifications overflowed while nobody read: go on
                if exc.errno != errno.ENOBUFS:
                    raise
                continue
            addresses, _ = ifaddr.parse_addresses(data)
            for a in addresses:
                if a.index == self.sockets.index and a.dad_failed:
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
                        payload = await self._link.receive()
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
        try:
            await self._link.send(encode(t.message), self.source, t.dest)
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
