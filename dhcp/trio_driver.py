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
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

from . import arp, frame
from .bpf import Program, attach_filter, packet_socket
from .client import Client, State
from .events import (
    Action,
    ConflictDetected,
    GaveUp,
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
    socket on the leased address."""

    ifname: str
    mac: bytes
    raw: socket.socket
    arp: socket.socket | None
    udp: socket.socket | None = None

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
        self.close_udp()
        if self.arp is not None:
            self.arp.close()
        self.raw.close()


class DhcpFailed(Exception):
    """No lease could be had (the reason says what was last heard)."""


class Driver:
    """Runs one Client over one interface's Sockets until it stops.

    A new lease is probed for (RFC 5227, ``probe``) before it is reported bound, when the
    Sockets have an ARP socket; an address in use is DECLINEd and the client starts over.
    """

    def __init__(
        self,
        client: Client,
        sockets: Sockets,
        on_action: Callable[[Action], None] | None = None,
        probe: arp.ProbeConfig | None = arp.ProbeConfig(),  # noqa: B008 -- frozen
    ) -> None:
        self.client = client
        self.sockets = sockets
        self.probe = probe if sockets.arp is not None else None
        self.raw = trio.socket.from_stdlib_socket(sockets.raw)
        self.on_action = on_action or (lambda action: None)
        self.lease: Lease | None = None
        self.failure: str | None = None
        self._wake = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Lease] = trio.TASK_STATUS_IGNORED) -> None:
        """Acquire, hand the lease to ``task_status.started``, then keep it until stopped.

        Raises DhcpFailed when no lease comes within the client's timeout.
        """
        started = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive)
            await self._carry_out(self.client.handle(Started(trio.current_time())))
            while self.client.state is not State.STOPPED:
                if self.lease is not None and not started:
                    started = True
                    task_status.started(self.lease)
                deadline = self.client.next_deadline
                with trio.move_on_at(float("inf") if deadline is None else deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
                now = trio.current_time()
                if deadline is not None and now >= deadline:
                    await self._carry_out(self.client.handle(TimerFired(now)))
            nursery.cancel_scope.cancel()
        if self.failure is not None and not started:
            raise DhcpFailed(self.failure)

    async def _receive(self) -> None:
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
                now = trio.current_time()
                await self._carry_out(self.client.handle(PacketReceived(now, payload)))
                self._wake.set()

    async def release(self) -> None:
        """RELEASE from the leased address; call it before the address or the link goes."""
        await self._carry_out(self.client.handle(ReleaseRequested(trio.current_time())))
        self._wake.set()

    async def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                await self._transmit(action)
            elif isinstance(action, LeaseBound) and not await self._address_is_free(action.lease):
                orders = self.client.handle(ConflictDetected(trio.current_time()))
                # never reported bound, so its loss is not reported either: DECLINE and go on
                await self._carry_out([o for o in orders if not isinstance(o, LeaseLost)])
                continue
            elif isinstance(action, LeaseBound | LeaseRenewed):
                self.lease = action.lease
            elif isinstance(action, LeaseLost):
                self.lease = None
                self.sockets.close_udp()
            elif isinstance(action, GaveUp):
                self.failure = action.reason
            self.on_action(action)

    async def _address_is_free(self, lease: Lease) -> bool:
        if self.probe is None:
            return True
        assert self.sockets.arp is not None
        holder = await arp.probe(self.sockets.arp, self.sockets.mac, lease.address, self.probe)
        if holder is None:
            return True
        log.warning(
            "%s from %s is already used by %s: declining it",
            lease.address,
            lease.server_id,
            holder.hex(":"),
        )
        return False

    async def _transmit(self, t: Transmit) -> None:
        """From 0.0.0.0: a raw broadcast frame. From the lease: UDP on that address, or a raw
        frame carrying it when the address is not (yet) on the interface."""
        payload = encode(t.message)
        if not t.src.is_unspecified and self.sockets.udp is None:
            try:
                self.sockets.open_udp(t.src)
            except OSError as exc:
                log.debug("no UDP socket on %s (%s); sending a raw frame", t.src, exc)
        if t.src.is_unspecified or self.sockets.udp is None:
            await self.raw.send(frame.build_udp(payload, self.sockets.mac, t.src, t.dest))
            return
        udp = trio.socket.from_stdlib_socket(self.sockets.udp)
        await udp.sendto(payload, (str(t.dest), frame.SERVER_PORT))
