"""Address conflict detection (RFC 5227): is an address already in use on the link?

A DHCP client probes the address it was given before using it (RFC 2131
section 2.2) and DECLINEs it when someone answers; Lark's static addresses are
probed the same way. The frame codec and the ``Prober`` machine are pure
(the DHCP client runs one in its machine); ``trio_driver.probe_address``
runs one alone on a socket. ``ProbeConfig()`` holds
the RFC's timings (about 4-7 s); callers that value a fast start pass shorter
ones.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
from dataclasses import dataclass

from .bpf import ETH_P_ALL, outgoing_only, packet_socket

log = logging.getLogger("dhcp.arp")
ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\0" * 6
REQUEST, REPLY = 1, 2
_ZERO = ipaddress.IPv4Address(0)
_FRAME = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # Ethernet + ARP for IPv4 over Ethernet

# tcpdump -dd 'arp': ethertype ARP only (the bind protocol says the same)
_ARP_ONLY = [(0x28, 0, 0, 12), (0x15, 0, 1, ETH_P_ARP), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]


@dataclass(frozen=True)
class ProbeConfig:
    """RFC 5227 section 1.1: PROBE_WAIT, PROBE_NUM, PROBE_MIN..PROBE_MAX, ANNOUNCE_WAIT."""

    initial_wait_s: float = 1.0  # a random delay up to this before the first probe
    count: int = 3
    interval_s: tuple[float, float] = (1.0, 2.0)
    final_wait_s: float = 2.0  # listen this long after the last probe
    announce: bool = True  # one gratuitous ARP once the address is ours


FAST = ProbeConfig(initial_wait_s=0.0, count=2, interval_s=(0.02, 0.05), final_wait_s=0.1)


@dataclass(frozen=True)
class Arp:
    op: int
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_ip: ipaddress.IPv4Address


def build(
    op: int, mac: bytes, sender: ipaddress.IPv4Address, target: ipaddress.IPv4Address
) -> bytes:
    """A broadcast ARP frame; a probe has sender 0.0.0.0, an announcement sender == target."""
    return _FRAME.pack(
        BROADCAST_MAC,
        mac,
        ETH_P_ARP,
        1,  # Ethernet
        0x0800,
        6,
        4,
        op,
        mac,
        sender.packed,
        ZERO_MAC,
        target.packed,
    )


def parse(data: bytes) -> Arp | None:
    """The ARP of an Ethernet frame, or None if it is not IPv4-over-Ethernet ARP."""
    if len(data) < _FRAME.size:
        return None
    _, _, ethertype, htype, ptype, hlen, plen, op, sha, spa, _, tpa = _FRAME.unpack_from(data)
    if (ethertype, htype, ptype, hlen, plen) != (ETH_P_ARP, 1, 0x0800, 6, 4):
        return None
    return Arp(op, sha, ipaddress.IPv4Address(spa), ipaddress.IPv4Address(tpa))


def conflicts(arp: Arp, address: ipaddress.IPv4Address, mac: bytes) -> bool:
    """Section 2.1.1: anyone else claiming the address, or probing for it at the same time."""
    if arp.sender_mac == mac:
        return False
    if arp.sender_ip == address:
        return True
    return arp.op == REQUEST and arp.sender_ip.is_unspecified and arp.target_ip == address


def open_socket(ifname: str) -> tuple[socket.socket, bytes]:
    """An ARP socket on ``ifname`` in the calling thread's network namespace, and its MAC."""
    sock = packet_socket(ifname, ETH_P_ARP, _ARP_ONLY)
    return sock, sock.getsockname()[4]


def open_port_socket(port: str) -> socket.socket:
    """An ARP socket hearing only what a bridge sends out of ``port`` (see
    ``bpf.outgoing_only``): a probe made for the host behind the port from the bridge's side
    hears the LAN's answers, and nothing that host says itself."""
    return packet_socket(port, ETH_P_ALL, outgoing_only(_ARP_ONLY))


@dataclass
class Prober:
    """One RFC 5227 probe of ``address`` as a machine: ``tick(now)`` gives the probe frame
    due at ``now`` (if any), ``hear(frame)`` takes each ARP frame heard meanwhile, and
    ``next_at`` is when to tick again. The DHCP client runs one inside its own machine; the
    async ``probe()`` below runs one for a static address."""

    mac: bytes
    address: ipaddress.IPv4Address
    config: ProbeConfig
    rng: random.Random
    next_at: float = 0.0
    sent: int = 0
    holder: bytes | None = None  # whoever answered: the address is in use

    def start(self, now: float) -> None:
        self.next_at = now + self.rng.uniform(0, self.config.initial_wait_s)  # PROBE_WAIT

    def tick(self, now: float) -> bytes | None:
        if now < self.next_at or self.sent >= self.config.count:
            return None
        self.sent += 1
        last = self.sent == self.config.count
        wait = self.config.final_wait_s if last else self.rng.uniform(*self.config.interval_s)
        self.next_at = now + wait
        return build(REQUEST, self.mac, _ZERO, self.address)

    def finished(self, now: float) -> bool:
        """Every probe sent and the last one's answer waited for, with no one answering."""
        return self.holder is None and self.sent >= self.config.count and now >= self.next_at

    def hear(self, frame: bytes) -> bool:
        """True when ``frame`` shows the address in use (``holder`` says by whom)."""
        arp = parse(frame)
        if self.holder is None and arp is not None and conflicts(arp, self.address, self.mac):
            self.holder = arp.sender_mac
        return self.holder is not None

    def announcement(self) -> bytes:
        return build(REQUEST, self.mac, self.address, self.address)


def drain(sock: socket.socket) -> None:
    """Drop what queued up before a probe: it says nothing about now."""
    while True:
        try:
            sock.recv(128, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
