"""The trio driver: the only module of dhcp/ that owns sockets and a clock.

It feeds the sans-IO Client with facts (packets, timer wake-ups at
``next_deadline``) and carries out its orders. Until it has an address the
client speaks through an AF_PACKET socket with a BPF filter that wakes it
only for UDP to port 68; from the leased address it sends over UDP. The
sockets are plain ones handed in (``Sockets``), so a caller can open them in
another network namespace (a socket keeps the namespace it was made in).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from . import arp, frame
from .bpf import ETH_P_ALL, Program, attach_filter, outgoing_only, packet_socket, send_socket
from .client import Client, State
from .errors import DhcpFailed, LocalProtocolError
from .events import (
    BROADCAST,
    Action,
    AddressInUse,
    ArpReceived,
    ConflictDetected,
    GaveUp,
    Input,
    LeaseBound,
    LeaseLost,
    LeaseRenewed,
    PacketReceived,
    ReleaseRequested,
    SendArp,
    Started,
    TimerFired,
    Transmit,
)
from .lease import Lease
from .message import encode

__all__ = [
    "DhcpFailed",
    "Driver",
    "Link",
    "SocketLink",
    "Sockets",
    "probe_address",
    "reply_filter",
]

log = logging.getLogger("dhcp.driver")
ETH_P_IP = 0x0800
SO_BINDTODEVICE = 25
SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_CSUMNOTREADY, TP_STATUS_CSUM_VALID = 1 << 3, 1 << 7
_AUX_SPACE = socket.CMSG_SPACE(32)

_CHADDR_AT = 8 + 28  # from the UDP header: UDP header, then BOOTP's op..giaddr


def reply_filter(chaddr: bytes) -> Program:
    """Classic BPF: unfragmented IPv4 UDP to port 68 whose BOOTP chaddr is ours, so that a
    client wakes only for its own replies, not for every other client's on the link
    (``tcpdump -dd 'udp dst port 68 and not ip[6:2] & 0x1fff != 0'`` plus the chaddr)."""
    hi, lo = struct.unpack("!IH", chaddr[:6])
    drop = 14
    return [
        (0x28, 0, 0, 12),  # 0: ethertype
        (0x15, 0, drop - 2, ETH_P_IP),
        (0x30, 0, 0, 23),  # 2: IP protocol
        (0x15, 0, drop - 4, 17),
        (0x28, 0, 0, 20),  # 4: fragment offset
        (0x45, drop - 6, 0, 0x1FFF),
        (0xB1, 0, 0, 14),  # 6: x = IP header length
        (0x48, 0, 0, 14 + 2),  # UDP destination port
        (0x15, 0, drop - 9, frame.CLIENT_PORT),
        (0x40, 0, 0, 14 + _CHADDR_AT),  # 9: chaddr[0:4]
        (0x15, 0, drop - 11, hi),
        (0x48, 0, 0, 14 + _CHADDR_AT + 4),  # 11: chaddr[4:6]
        (0x15, 0, drop - 13, lo),
        (0x06, 0, 0, 0xFFFF),  # 13: accept
        (0x06, 0, 0, 0),  # 14: drop
    ]


@dataclass
class Sockets:
    """The raw socket (always), an ARP socket for the conflict probe and, once bound, a UDP
    socket on the leased address.

    Made by ``open_port`` instead, they serve a host behind a bridge port from the bridge's
    side: ``raw`` and ``arp`` hear only what the bridge sends out of the port, and every
    frame goes into the bridge through ``tx`` on ``tx_ifname`` (no UDP socket: the address
    is the host's, not ours)."""

    ifname: str
    mac: bytes
    raw: socket.socket
    arp: socket.socket | None
    udp: socket.socket | None = None
    tx: socket.socket | None = None
    tx_ifname: str = ""

    @classmethod
    def open(cls, ifname: str, chaddr: bytes | None = None, *, arp_probe: bool = True) -> Sockets:
        """Open in the calling thread's network namespace; replies are filtered for
        ``chaddr`` (default: the interface's MAC, which is then ``mac``). Without
        ``arp_probe`` there is no ARP socket and the Driver cannot probe."""
        raw = packet_socket(ifname, ETH_P_IP, [(0x06, 0, 0, 0)])  # nothing until filtered
        try:
            raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            mac = chaddr or raw.getsockname()[4]
            attach_filter(raw, reply_filter(mac))
            arp_sock = arp.open_socket(ifname)[0] if arp_probe else None
        except BaseException:
            raw.close()
            raise
        return cls(ifname, mac, raw, arp_sock)

    @classmethod
    def open_port(cls, port: str, bridge: str, mac: bytes, *, arp_probe: bool = True) -> Sockets:
        """A client for the host behind bridge port ``port`` whose MAC is ``mac``, run from
        the bridge's side (open them in the bridge's namespace): it hears the replies the
        bridge sends that host and speaks into ``bridge`` as that host. What the host itself
        sends (forged replies, answers to probes) never reaches this client, and the host
        need not send DHCP at all."""
        raw = packet_socket(port, ETH_P_ALL, outgoing_only(reply_filter(mac)))
        arp_sock = tx = None
        try:
            raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            arp_sock = arp.open_port_socket(port) if arp_probe else None
            tx = send_socket()
        except BaseException:
            for sock in (raw, arp_sock):
                if sock is not None:
                    sock.close()
            raise
        return cls(port, mac, raw, arp_sock, tx=tx, tx_ifname=bridge)

    def open_udp(self, address: ipaddress.IPv4Address) -> None:
        self.close_udp()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            udp.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.ifname.encode())
            udp.bind((str(address), frame.CLIENT_PORT))
        except BaseException:
            udp.close()
            raise
        self.udp = udp

    def close_udp(self) -> None:
        if self.udp is not None:
            self.udp.close()
            self.udp = None

    def close(self) -> None:
        for close in self.closers():
            close()

    def closers(self) -> list[Callable[[], None]]:
        """One call per socket: closing a packet socket waits out an RCU grace period, so a
        caller in a hurry runs these in parallel."""
        found = [self.raw.close, self.close_udp]
        found += [s.close for s in (self.arp, self.tx) if s is not None]
        return found


class Link(Protocol):
    """What a Driver needs of the network, and no more (httpcore's backends): ``SocketLink``
    is the real one; a test scripts its own server behind one, in virtual time."""

    can_probe: bool

    async def receive(self) -> tuple[bytes, bytes]:
        """The next UDP payload for the client's port, and the Ethernet source it came from."""
        ...

    async def receive_arp(self) -> bytes: ...

    def forget_arp(self) -> None:
        """Drop the ARP frames that queued up unheard: they say nothing about now."""

    async def send(self, t: Transmit) -> None: ...

    async def send_arp(self, frame: bytes) -> None: ...

    def address_gone(self) -> None:
        """The lease is lost: stop sending from its address."""


class SocketLink:
    """A Link over ``Sockets``: a raw frame until there is an address, UDP from it after."""

    def __init__(self, sockets: Sockets) -> None:
        self.sockets = sockets
        self.can_probe = sockets.arp is not None
        self.raw = trio.socket.from_stdlib_socket(sockets.raw)
        self.tx = trio.socket.from_stdlib_socket(sockets.tx) if sockets.tx is not None else None
        self.arp = trio.socket.from_stdlib_socket(sockets.arp) if sockets.arp is not None else None

    async def receive(self) -> tuple[bytes, bytes]:
        while True:
            data, ancdata, _flags, _addr = await self.raw.recvmsg(4096, _AUX_SPACE)
            check_udp = True
            for level, kind, aux in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= 4:
                    status = struct.unpack_from("=I", aux)[0]
                    # offloaded: the checksum is filled in later, or the NIC checked it
                    check_udp = not status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID)
            payload = frame.parse_udp(data, check_udp=check_udp)
            if payload is not None:
                return payload, data[6:12]

    async def receive_arp(self) -> bytes:
        assert self.arp is not None
        return await self.arp.recv(128)

    def forget_arp(self) -> None:
        if self.sockets.arp is not None:
            arp.drain(self.sockets.arp)

    async def send_arp(self, data: bytes) -> None:
        if self.tx is not None:
            await self.tx.sendto(data, (self.sockets.tx_ifname, arp.ETH_P_ARP))
        else:
            assert self.arp is not None
            await self.arp.send(data)

    def address_gone(self) -> None:
        self.sockets.close_udp()

    async def send(self, t: Transmit) -> None:
        """From 0.0.0.0: a raw broadcast frame. From the lease: UDP on that address, or a raw
        frame carrying it when the address is not (yet) on the interface (or not ours: a
        port's client), unicast ones to the next hop the client names."""
        payload = encode(t.message)
        s = self.sockets
        if not t.src.is_unspecified and s.udp is None and self.tx is None:
            try:
                s.open_udp(t.src)
            except OSError as exc:
                log.debug("no UDP socket on %s (%s); sending a raw frame", t.src, exc)
        if t.src.is_unspecified or s.udp is None:
            dst_mac = frame.BROADCAST_MAC
            if t.dest != BROADCAST and t.dst_mac:
                dst_mac = t.dst_mac
            data = frame.build_udp(payload, s.mac, t.src, t.dest, dst_mac=dst_mac)
            if self.tx is None:
                await self.raw.send(data)
            else:
                await self.tx.sendto(data, (s.tx_ifname, ETH_P_IP))
            return
        udp = trio.socket.from_stdlib_socket(s.udp)
        await udp.sendto(payload, (str(t.dest), frame.SERVER_PORT))


class Driver:
    """Runs one Client over one Link (or interface's Sockets) until it stops: one loop in
    one task hands the client every fact (a packet, an ARP frame while it probes, its
    deadline, a release) and carries out its orders in order. Readers only queue what
    they hear.

    ``taken`` names addresses in use that a probe cannot hear: a port's client probes from
    inside the bridge, whose own host never answers what it sends itself.
    """

    def __init__(
        self,
        client: Client,
        link: Link | Sockets,
        on_action: Callable[[Action], None] | None = None,
        taken: Callable[[ipaddress.IPv4Address], bool] = lambda address: False,
    ) -> None:
        self.link: Link = SocketLink(link) if isinstance(link, Sockets) else link
        if client.config.probe is not None and not self.link.can_probe:
            raise LocalProtocolError("the client probes (RFC 5227) but the link has no ARP")
        self.client = client
        self.taken = taken
        self.on_action = on_action or (lambda action: None)
        self.lease: Lease | None = None
        self.failure: str | None = None
        self._to_loop, self._inbox = trio.open_memory_channel[Input | trio.Event](16)
        self._running = False
        self._arp_reader: trio.CancelScope | None = None

    async def run(self, *, task_status: trio.TaskStatus[Lease] = trio.TASK_STATUS_IGNORED) -> None:
        """Acquire, hand the lease to ``task_status.started``, then keep it until stopped.

        Raises DhcpFailed when no lease comes within the client's timeout.
        """
        started = False
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_dhcp)
                await self._carry_out(self.client.handle(Started(trio.current_time())))
                while self.client.state is not State.STOPPED:
                    if self.lease is not None and not started:
                        started = True
                        task_status.started(self.lease)
                    self._follow_probe(nursery)
                    await self._next_fact()
                nursery.cancel_scope.cancel()
        finally:
            self._running = False
        if self.failure is not None and not started:
            raise DhcpFailed(self.failure)

    async def _next_fact(self) -> None:
        deadline = self.client.next_deadline
        got: Input | trio.Event | None = None
        with trio.move_on_at(float("inf") if deadline is None else deadline):
            got = await self._inbox.receive()
        if got is None:
            await self._carry_out(self.client.handle(TimerFired(trio.current_time())))
        elif isinstance(got, trio.Event):  # release(): done once its orders are carried out
            await self._carry_out(self.client.handle(ReleaseRequested(trio.current_time())))
            got.set()
        else:
            await self._carry_out(self.client.handle(got))

    def _follow_probe(self, nursery: trio.Nursery) -> None:
        """Hear ARP only while the client probes: a busy LAN's ARP never wakes a bound one."""
        probing = self.client.state is State.PROBING
        if probing and self._arp_reader is None:
            self.link.forget_arp()
            self._arp_reader = trio.CancelScope()
            nursery.start_soon(self._read_arp, self._arp_reader)
        elif not probing and self._arp_reader is not None:
            self._arp_reader.cancel()
            self._arp_reader = None

    async def _read_dhcp(self) -> None:
        while True:
            payload, src_mac = await self.link.receive()
            await self._to_loop.send(PacketReceived(trio.current_time(), payload, src_mac))

    async def _read_arp(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                data = await self.link.receive_arp()
                await self._to_loop.send(ArpReceived(trio.current_time(), data))

    async def release(self) -> None:
        """RELEASE from the leased address; call it before the address or the link goes.
        Handed to the loop while it runs; after it was cancelled (a job's nursery ends
        before its teardown) the driver carries the release out itself."""
        if not self._running:
            await self._carry_out(self.client.handle(ReleaseRequested(trio.current_time())))
            return
        done = trio.Event()
        await self._to_loop.send(done)
        await done.wait()

    async def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                await self.link.send(action)
            elif isinstance(action, SendArp):
                if action.probing is not None and self.taken(action.probing):
                    await self._carry_out(self.client.handle(ConflictDetected(trio.current_time())))
                    continue
                await self.link.send_arp(action.frame)
            elif isinstance(action, AddressInUse):
                log.warning(
                    "%s from %s is already used by %s: declining it",
                    action.address,
                    action.server,
                    action.holder.hex(":") if action.holder else "this host",
                )
            elif isinstance(action, LeaseBound | LeaseRenewed):
                self.lease = action.lease
            elif isinstance(action, LeaseLost):
                self.lease = None
                self.link.address_gone()
            elif isinstance(action, GaveUp):
                self.failure = action.reason
            self.on_action(action)


async def probe_address(
    sock: socket.socket,
    mac: bytes,
    address: ipaddress.IPv4Address,
    config: arp.ProbeConfig = arp.ProbeConfig(),  # noqa: B008 -- frozen
    rng: random.Random | None = None,
    via: tuple[socket.socket, str] | None = None,
) -> bytes | None:
    """Probe for ``address`` (RFC 5227) outside a DHCP client (a static one): the MAC of
    whoever holds it, or None when it is free.

    ``via`` (a send socket and an interface) sends the probes there instead of on ``sock``:
    into a bridge, for a host behind one of its ports (``open_port_socket``)."""
    prober = arp.Prober(mac, address, config, rng or random.Random())
    arp.drain(sock)
    tsock = trio.socket.from_stdlib_socket(sock)
    tx = trio.socket.from_stdlib_socket(via[0]) if via is not None else None

    async def send(data: bytes) -> None:
        if tx is None or via is None:
            await tsock.send(data)
        else:
            await tx.sendto(data, (via[1], arp.ETH_P_ARP))

    prober.start(trio.current_time())
    while not prober.finished(trio.current_time()):
        due = prober.tick(trio.current_time())
        if due is not None:
            await send(due)
            continue
        with trio.move_on_at(prober.next_at):
            if prober.hear(await tsock.recv(128)):
                holder = prober.holder
                assert holder is not None
                log.info("%s is in use on the link by %s", address, holder.hex(":"))
                return holder
    if config.announce:
        await send(prober.announcement())
    return None
