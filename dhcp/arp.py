"""Address conflict detection (RFC 5227): is an address already in use on the link?

A DHCP client probes the address it was given before using it (RFC 2131
section 2.2) and DECLINEs it when someone answers; Lark's static addresses are
probed the same way. The frame codec is pure; ``probe()`` owns the socket and
the clock. ``ProbeConfig()`` holds the RFC's timings (about 4-7 s); callers
that value a fast start pass shorter ones.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
from dataclasses import dataclass

import trio

from .bpf import ETH_P_ALL, outgoing_only, packet_socket

log = logging.getLogger("dhcp.arp")
ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\0" * 6
REQUEST, REPLY = 1, 2
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


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(128, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return


async def probe(
    sock: socket.socket,
    mac: bytes,
    address: ipaddress.IPv4Address,
    config: ProbeConfig = ProbeConfig(),
    rng: random.Random | None = None,
    via: tuple[socket.socket, str] | None = None,
) -> bytes | None:
    """Probe for ``address``; the MAC of whoever holds it, or None when it is free.

    ``via`` (a send socket and an interface) sends the probes there instead of on ``sock``:
    into a bridge, for a host behind one of its ports (``open_port_socket``)."""
    rng = rng or random.Random()
    _drain(sock)  # what queued up before the probe says nothing about now
    tsock = trio.socket.from_stdlib_socket(sock)
    holder: bytes | None = None

    tx = trio.socket.from_stdlib_socket(via[0]) if via is not None else None

    async def send(frame: bytes) -> None:
        if tx is None or via is None:
            await tsock.send(frame)
        else:
            await tx.sendto(frame, (via[1], ETH_P_ARP))

    async def listen() -> None:
        nonlocal holder
        while True:
            arp = parse(await tsock.recv(128))
            if arp is not None and conflicts(arp, address, mac):
                holder = arp.sender_mac
                return

    zero = ipaddress.IPv4Address(0)
    async with trio.open_nursery() as nursery:

        async def send_probes() -> None:
            await trio.sleep(rng.uniform(0, config.initial_wait_s))
            for i in range(config.count):
                await send(build(REQUEST, mac, zero, address))
                last = i == config.count - 1
                await trio.sleep(config.final_wait_s if last else rng.uniform(*config.interval_s))
            nursery.cancel_scope.cancel()

        async def listen_then_stop() -> None:
            await listen()
            nursery.cancel_scope.cancel()

        nursery.start_soon(listen_then_stop)
        nursery.start_soon(send_probes)
    if holder is not None:
        log.info("%s is in use on the link by %s", address, holder.hex(":"))
        return holder
    if config.announce:
        await send(build(REQUEST, mac, address, address))
    return None
