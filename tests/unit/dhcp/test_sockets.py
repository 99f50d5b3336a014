"""The trio driver's sockets in the kernel: Sockets, SocketLink and probe_address on veths and
a bridge in a private network namespace (helpers/private_net.py: new, unnamed, gone with the
test), and one Driver run over a veth against a DHCP server scripted at its other end.

Each test's async part runs inside the namespace (``PrivateNet.run_trio``), so what the code
opens as it runs (the UDP socket on a leased address) is opened there too. Frames come and
go through the far end of each link (``Wire``): what the client sends is read there, exactly,
and what the client must or must not hear is sent from there. Needs root (skipped otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import random
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest
import trio
from helpers.private_net import PrivateNet, ip, private_net

from dhcp import arp, frame, trio_driver
from dhcp import options as opt
from dhcp.bpf import ETH_P_ALL, PACKET_OUTGOING, packet_socket, send_socket
from dhcp.client import Client, Config
from dhcp.events import BROADCAST, Action, LeaseBound, LeaseLost, LeaseRenewed, Transmit
from dhcp.message import BOOTREPLY, BOOTREQUEST, Message, decode, encode
from dhcp.trio_driver import (
    ETH_P_IP,
    PACKET_AUXDATA,
    SO_BINDTODEVICE,
    SOL_PACKET,
    Driver,
    SocketLink,
    Sockets,
    probe_address,
    reply_filter,
)

MT = opt.MessageType
IP = ipaddress.IPv4Address
ZERO = IP(0)
_SFX = os.urandom(2).hex()  # the links live in the test's namespace only; unique all the same
CLIENT, PEER = f"ktc{_SFX}", f"kts{_SFX}"  # a veth: the client's end, and the LAN's
PORT, HOST = f"ktp{_SFX}", f"kth{_SFX}"  # a bridge port, and the host behind it
UPLINK, LAN = f"ktu{_SFX}", f"ktl{_SFX}"  # another port, and the LAN behind that
BRIDGE = f"ktb{_SFX}"
CLIENT_MAC, PEER_MAC = bytes.fromhex("02000000a001"), bytes.fromhex("02000000a002")
HOST_MAC, LAN_MAC = bytes.fromhex("02000000b001"), bytes.fromhex("02000000b002")
PORT_MAC, UPLINK_MAC = bytes.fromhex("02000000b011"), bytes.fromhex("02000000b012")
SERVER_MAC = bytes.fromhex("02000000d001")  # a relay's or router's: not the interface's own
OTHER_MAC = bytes.fromhex("02000000c0ff")
SERVER, LEASED = IP("10.99.0.1"), IP("10.99.0.50")
PROBE = arp.ProbeConfig(initial_wait_s=0.0, count=2, interval_s=(0.01, 0.01), final_wait_s=0.05)
# (an answer ends the probe at once: the long last wait costs nothing, and a loaded machine
# may well hold the answer back longer than PROBE's)
ANSWERED = dataclasses.replace(PROBE, final_wait_s=1.0)
QUIET = 0.05  # the wait for frames beyond those expected
TOS_OURS = 0x10  # frame.build_udp's; the kernel's UDP sends 0


@pytest.fixture
def net() -> Iterator[PrivateNet]:
    with private_net() as made:
        yield made


@pytest.fixture
def veth(net: PrivateNet) -> PrivateNet:
    net.veth(CLIENT, CLIENT_MAC.hex(":"), PEER, PEER_MAC.hex(":"))
    return net


@pytest.fixture
def bridged(net: PrivateNet) -> PrivateNet:
    """BRIDGE with two ports: PORT, with the host (HOST) behind it, and UPLINK to the LAN."""
    net.veth(PORT, PORT_MAC.hex(":"), HOST, HOST_MAC.hex(":"))
    net.veth(UPLINK, UPLINK_MAC.hex(":"), LAN, LAN_MAC.hex(":"))
    net.bridge(BRIDGE, PORT, UPLINK)
    return net


# -- frames ---------------------------------------------------------------------------------

# every frame the interface receives, none it sends
NOT_SENT = [(0x20, 0, 0, 0xFFFFF004), (0x15, 0, 1, PACKET_OUTGOING), (0x06, 0, 0, 0)]
NOT_SENT.append((0x06, 0, 0, 0xFFFF))


class Wire:
    """The far end of a link, as the test sees it: it reads every frame arriving there and
    sends frames from there."""

    def __init__(self, net: PrivateNet, ifname: str) -> None:
        self.ifname = ifname
        self.rx = net.open(lambda: packet_socket(ifname, ETH_P_ALL, NOT_SENT))
        self.tx = net.open(send_socket)

    def send(self, data: bytes, protocol: int = ETH_P_IP) -> None:
        self.tx.sendto(data, (self.ifname, protocol))

    def heard(self, want: Callable[[bytes], bool], count: int, wait: float = 2.0) -> list[bytes]:
        """The wanted frames that came, once ``count`` came (or ``wait`` passed), and any
        more within the next QUIET seconds. (A loaded machine can hold a frame back for a
        while: a veth hands it to the softirq thread, when that is busy.)"""
        out: list[bytes] = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic() if len(out) < count else QUIET
            if not select.select([self.rx], [], [], max(left, 0))[0]:
                return out
            data = self.rx.recv(65536)
            if want(data):
                out.append(data)


def is_arp(data: bytes) -> bool:
    return data[12:14] == b"\x08\x06"


def to_server(data: bytes) -> bool:
    """IPv4 UDP to port 67 (the UDP checksum unchecked: the kernel's is left to offload)."""
    return frame.parse_udp(data, dst_port=67, check_udp=False) is not None


def ip_header(data: bytes) -> tuple[int, int, int, IP, IP]:
    """(version/IHL, TOS, protocol, source, destination) of an IPv4 frame."""
    vihl, tos, proto, src, dst = struct.unpack_from("!BB7xB2x4s4s", data, 14)
    return vihl, tos, proto, IP(src), IP(dst)


def udp_ports(data: bytes) -> tuple[int, int]:
    return struct.unpack_from("!HH", data, 14 + 20)


def payload(data: bytes) -> bytes:
    got = frame.parse_udp(data, dst_port=67, check_udp=False)
    assert got is not None
    return got


def request(
    xid: int, kind: MT = MT.DISCOVER, ciaddr: IP = ZERO, mac: bytes = CLIENT_MAC
) -> Message:
    o = {opt.MESSAGE_TYPE: bytes([kind])}
    return Message(op=BOOTREQUEST, xid=xid, chaddr=mac, ciaddr=ciaddr, options=o)


def reply(xid: int, chaddr: bytes = CLIENT_MAC) -> bytes:
    o = {opt.MESSAGE_TYPE: bytes([MT.OFFER]), opt.SERVER_ID: SERVER.packed}
    return encode(Message(op=BOOTREPLY, xid=xid, chaddr=chaddr, yiaddr=LEASED, options=o))


def reply_frame(
    xid: int,
    chaddr: bytes = CLIENT_MAC,
    src_mac: bytes = SERVER_MAC,
    dst_port: int = 68,
) -> bytes:
    return frame.build_udp(
        reply(xid, chaddr),
        src_mac,
        SERVER,
        BROADCAST,
        dst_mac=chaddr,
        src_port=67,
        dst_port=dst_port,
    )


def spoilt(xid: int, offset: int, value: bytes, fix_ip_checksum: bool = True) -> bytes:
    """A reply frame with ``value`` at ``offset``; the IP checksum made right again, unless
    that is what was spoilt."""
    f = bytearray(reply_frame(xid))
    f[offset : offset + len(value)] = value
    if fix_ip_checksum:
        f[24:26] = b"\0\0"
        f[24:26] = struct.pack("!H", frame.checksum(bytes(f[14:34])))
    return bytes(f)


def readable(sock: socket.socket, wait: float = 1.0) -> None:
    assert select.select([sock], [], [], wait)[0], "nothing queued"


def fds() -> set[str]:
    """This process's descriptors, and what each is."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the listing's own, closed by now)
            found.add(f"{fd}: {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


# -- Sockets.open, SocketLink.receive --------------------------------------------------------


def test_open_listens_on_the_interface_for_its_mac_with_an_arp_socket(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))
    assert (socks.ifname, socks.mac, socks.udp, socks.tx) == (CLIENT, CLIENT_MAC, None, None)
    assert socks.raw.getsockname()[:2] == (CLIENT, ETH_P_IP)
    assert socks.raw.getsockopt(SOL_PACKET, PACKET_AUXDATA) == 1
    assert socks.arp is not None and socks.arp.getsockname()[:2] == (CLIENT, arp.ETH_P_ARP)
    assert SocketLink(socks).can_probe
    other = veth.open(lambda: Sockets.open(CLIENT, OTHER_MAC, arp_probe=False))
    assert (other.mac, other.arp) == (OTHER_MAC, None) and not SocketLink(other).can_probe

    async def hear() -> None:
        wire = Wire(veth, PEER)
        wire.send(reply_frame(1, chaddr=OTHER_MAC))
        wire.send(reply_frame(2))
        with trio.fail_after(2):  # each hears the reply for its own chaddr, first
            assert await SocketLink(socks).receive() == (reply(2), SERVER_MAC)
            assert await SocketLink(other).receive() == (reply(1, OTHER_MAC), SERVER_MAC)

    veth.run_trio(hear)


BAD = {
    "for another chaddr": reply_frame(0, chaddr=OTHER_MAC),
    "for a chaddr other in its first four bytes": reply_frame(
        0, chaddr=bytes.fromhex("12000000a001")
    ),
    "to port 67": reply_frame(0, dst_port=67),
    "with a bad IP checksum": spoilt(0, 24, b"\x12\x34", fix_ip_checksum=False),
    "with a bad UDP checksum": spoilt(0, 40, b"\x12\x34"),
    "with its payload changed under the UDP checksum": spoilt(0, 14 + 20 + 8 + 4, b"\xff"),
    "a first fragment": spoilt(0, 20, b"\x20\x00"),  # more fragments: the filter passes it
    "a later fragment": spoilt(0, 20, b"\x00\x10"),
    "TCP": spoilt(0, 23, b"\x06"),
    "an IP datagram cut short": spoilt(0, 16, b"\x00\x1c"),  # 28 bytes: a UDP header only
}


def test_receive_returns_good_replies_for_us_only_with_their_source_mac(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))

    async def check() -> None:
        link, wire = SocketLink(socks), Wire(veth, PEER)
        with trio.fail_after(2):
            for xid, (why, bad) in enumerate(BAD.items(), 1):
                wire.send(bad)
                wire.send(reply_frame(xid))  # the next one returned, if ``bad`` was dropped
                assert await link.receive() == (reply(xid), SERVER_MAC), why
            wire.send(struct.pack("!6s6sH", CLIENT_MAC, SERVER_MAC, 0x86DD) + reply(0))
            wire.send(reply_frame(99, src_mac=PEER_MAC))
            assert await link.receive() == (reply(99), PEER_MAC)
            # sockets handed in without PACKET_AUXDATA: no word of offload, so every checksum
            # is checked
            unaided = veth.open(lambda: packet_socket(CLIENT, ETH_P_IP, reply_filter(CLIENT_MAC)))
            plain = SocketLink(Sockets(CLIENT, CLIENT_MAC, unaided, None))
            wire.send(BAD["with a bad UDP checksum"])
            wire.send(reply_frame(100))
            assert await plain.receive() == (reply(100), SERVER_MAC)

    veth.run_trio(check)


def test_the_kernel_filter_queues_nothing_but_udp_to_port_68_for_our_chaddr(veth):
    """What the filter drops never wakes the client: the first frame its socket has is the
    reply that came after them all."""
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)
    for bad in (
        reply_frame(1, chaddr=OTHER_MAC),  # the last two bytes of the chaddr differ
        reply_frame(2, chaddr=bytes.fromhex("12000000a001")),  # the first four
        reply_frame(3, dst_port=67),
        BAD["a later fragment"],
        BAD["TCP"],
    ):
        wire.send(bad)
    wire.send(reply_frame(9))
    readable(socks.raw)
    assert socks.raw.recv(4096) == reply_frame(9)


def test_receive_takes_a_reply_whose_checksum_the_kernel_left_to_offload(veth):
    """A reply sent by the kernel's UDP over the veth: its UDP checksum is not filled in yet
    (PACKET_AUXDATA: TP_STATUS_CSUMNOTREADY); it is good all the same."""
    socks = veth.open(lambda: Sockets.open(CLIENT))
    seen = veth.open(lambda: packet_socket(CLIENT, ETH_P_IP, reply_filter(CLIENT_MAC)))
    veth.ip("addr", "add", f"{SERVER}/24", "dev", PEER)

    def send_as_a_server() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, PEER.encode())
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            udp.bind((str(SERVER), 67))
            udp.sendto(reply(5), ("255.255.255.255", 68))

    async def check() -> None:
        veth.run(send_as_a_server)
        with trio.fail_after(2):
            assert await SocketLink(socks).receive() == (reply(5), PEER_MAC)

    veth.run_trio(check)
    readable(seen)  # and it was not a good frame in itself: its UDP checksum is wrong
    data = seen.recv(4096)
    assert frame.parse_udp(data) is None and frame.parse_udp(data, check_udp=False) == reply(5)


def test_sockets_that_fail_to_open_close_what_they_opened(bridged, monkeypatch):
    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EMFILE, "refused")

    before = fds()
    with pytest.raises(OSError):
        bridged.run(lambda: Sockets.open("no-such-if0"))
    monkeypatch.setattr(arp, "open_socket", refuse)
    with pytest.raises(OSError, match="refused"):
        bridged.run(lambda: Sockets.open(HOST))
    assert fds() == before
    monkeypatch.setattr(trio_driver, "send_socket", refuse)
    with pytest.raises(OSError, match="refused"):
        bridged.run(lambda: Sockets.open_port(PORT, BRIDGE, HOST_MAC))
    monkeypatch.setattr(arp, "open_port_socket", refuse)
    with pytest.raises(OSError, match="refused"):
        bridged.run(lambda: Sockets.open_port(PORT, BRIDGE, HOST_MAC))
    assert fds() == before


# -- SocketLink.send, address_gone -----------------------------------------------------------


def test_from_0_0_0_0_a_raw_broadcast_frame_goes_out(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)

    async def send() -> None:
        link = SocketLink(socks)
        await link.send(Transmit(request(1), BROADCAST, ZERO))
        await link.send(Transmit(request(2), BROADCAST, ZERO, dst_mac=PEER_MAC))  # (ignored)

    veth.run_trio(send)
    first, second = wire.heard(to_server, 2)
    assert first[:14] == frame.BROADCAST_MAC + CLIENT_MAC + b"\x08\x00"
    assert ip_header(first) == (0x45, TOS_OURS, 17, ZERO, BROADCAST)
    assert udp_ports(first) == (68, 67)
    assert frame.parse_udp(first, dst_port=67) == encode(request(1))  # with good checksums
    assert second[:6] == frame.BROADCAST_MAC and payload(second) == encode(request(2))
    assert socks.udp is None  # never a UDP socket on 0.0.0.0


def test_from_an_address_not_on_the_interface_a_raw_frame_to_the_next_hop(veth, caplog):
    caplog.set_level(logging.DEBUG, logger="dhcp.driver")
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)

    async def send() -> None:
        link = SocketLink(socks)
        await link.send(Transmit(request(1, MT.REQUEST, LEASED), SERVER, LEASED, PEER_MAC))
        await link.send(Transmit(request(2, MT.REQUEST, LEASED), SERVER, LEASED))  # no next hop

    veth.run_trio(send)
    first, second = wire.heard(to_server, 2)
    assert first[:14] == PEER_MAC + CLIENT_MAC + b"\x08\x00"
    assert ip_header(first) == (0x45, TOS_OURS, 17, LEASED, SERVER)
    assert frame.parse_udp(first, dst_port=67) == encode(request(1, MT.REQUEST, LEASED))
    assert second[:6] == frame.BROADCAST_MAC and ip_header(second)[3:] == (LEASED, SERVER)
    assert socks.udp is None
    why = os.strerror(errno.EADDRNOTAVAIL)
    assert (
        caplog.messages
        == [f"no UDP socket on {LEASED} ([Errno 99] {why}); sending a raw frame"] * 2
    )


def test_from_the_leased_address_on_the_interface_the_kernels_udp_sends(veth):
    """Once the lease is on the interface, UDP bound to it: the kernel's frames (TOS 0), to
    the kernel's next hop (ARP's, not the dst_mac given), unicast and broadcast (REBINDING);
    even with another client's socket on port 68 (dhclient's: *:68, SO_REUSEADDR)."""
    veth.ip("addr", "add", f"{LEASED}/24", "dev", CLIENT)
    veth.ip("neigh", "replace", str(SERVER), "lladdr", PEER_MAC.hex(":"), "dev", CLIENT)
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)

    def another_client() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 68))
        return sock

    veth.open(another_client)
    opened: list[socket.socket | None] = []

    async def send() -> None:
        link = SocketLink(socks)
        await link.send(Transmit(request(1, MT.REQUEST, LEASED), SERVER, LEASED, OTHER_MAC))
        opened.append(socks.udp)
        await link.send(Transmit(request(2, MT.REQUEST, LEASED), BROADCAST, LEASED))

    veth.run_trio(send)
    udp = opened[0]
    assert udp is not None and socks.udp is udp  # opened once, then kept
    assert udp.getsockname() == (str(LEASED), 68)
    assert udp.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 16).rstrip(b"\0") == CLIENT.encode()
    assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
    unicast, broadcast = wire.heard(to_server, 2)
    assert unicast[:12] == PEER_MAC + CLIENT_MAC
    assert ip_header(unicast) == (0x45, 0, 17, LEASED, SERVER) and udp_ports(unicast) == (68, 67)
    assert payload(unicast) == encode(request(1, MT.REQUEST, LEASED))
    assert broadcast[:12] == frame.BROADCAST_MAC + CLIENT_MAC
    assert ip_header(broadcast) == (0x45, 0, 17, LEASED, BROADCAST)
    assert payload(broadcast) == encode(request(2, MT.REQUEST, LEASED))

    SocketLink(socks).address_gone()  # the lease lost: the socket goes
    assert udp.fileno() == -1 and socks.udp is None


def test_open_udp_replaces_its_socket_and_closes_one_it_cannot_bind(veth):
    veth.ip("addr", "add", f"{LEASED}/24", "dev", CLIENT)
    socks = veth.open(lambda: Sockets.open(CLIENT))
    veth.run(lambda: socks.open_udp(LEASED))
    first = socks.udp
    veth.run(lambda: socks.open_udp(LEASED))
    assert first is not None and first.fileno() == -1
    assert socks.udp is not None and socks.udp.getsockname() == (str(LEASED), 68)
    before = fds()
    with pytest.raises(OSError) as failed:
        veth.run(lambda: socks.open_udp(SERVER))  # not ours
    assert failed.value.errno == errno.EADDRNOTAVAIL and socks.udp is None
    assert len(fds()) == len(before) - 1  # the old one closed, the new one not left open


def test_after_the_address_is_gone_raw_frames_again(veth):
    veth.ip("addr", "add", f"{LEASED}/24", "dev", CLIENT)
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)

    async def send() -> None:
        link = SocketLink(socks)
        await link.send(Transmit(request(1, MT.RELEASE, LEASED), SERVER, LEASED, PEER_MAC))
        assert socks.udp is not None
        link.address_gone()
        veth.ip("addr", "del", f"{LEASED}/24", "dev", CLIENT)
        await link.send(Transmit(request(2, MT.REQUEST, LEASED), SERVER, LEASED, PEER_MAC))

    veth.ip("neigh", "replace", str(SERVER), "lladdr", PEER_MAC.hex(":"), "dev", CLIENT)
    veth.run_trio(send)
    by_udp, raw = wire.heard(to_server, 2)
    assert ip_header(by_udp)[1] == 0 and ip_header(raw)[1] == TOS_OURS
    assert socks.udp is None


# -- the bridge's side of a port: Sockets.open_port ------------------------------------------


def test_a_port_client_hears_only_what_the_bridge_sends_out_of_the_port(bridged):
    socks = bridged.open(lambda: Sockets.open_port(PORT, BRIDGE, HOST_MAC))
    assert (socks.ifname, socks.mac, socks.tx_ifname, socks.udp) == (PORT, HOST_MAC, BRIDGE, None)
    assert socks.raw.getsockname()[:2] == (PORT, ETH_P_ALL)
    assert socks.raw.getsockopt(SOL_PACKET, PACKET_AUXDATA) == 1
    assert socks.arp is not None and socks.arp.getsockname()[:2] == (PORT, ETH_P_ALL)
    assert socks.tx is not None and socks.tx.proto == 0
    host, lan = Wire(bridged, HOST), Wire(bridged, LAN)
    claim = arp.build(arp.REPLY, HOST_MAC, LEASED, SERVER)

    async def hear() -> None:
        link = SocketLink(socks)
        assert link.can_probe
        with trio.fail_after(2):
            host.send(reply_frame(1, chaddr=HOST_MAC, src_mac=HOST_MAC))  # forged behind it
            lan.send(reply_frame(2, chaddr=HOST_MAC, src_mac=LAN_MAC))  # sent out of the port
            assert await link.receive() == (reply(2, HOST_MAC), LAN_MAC)
            host.send(claim, arp.ETH_P_ARP)
            lan.send(arp.build(arp.REPLY, LAN_MAC, SERVER, LEASED), arp.ETH_P_ARP)
            assert await link.receive_arp() == arp.build(arp.REPLY, LAN_MAC, SERVER, LEASED)

    bridged.run_trio(hear)
    port_only = bridged.open(lambda: Sockets.open_port(PORT, BRIDGE, HOST_MAC, arp_probe=False))
    assert port_only.arp is None and port_only.tx is not None


def test_a_port_client_sends_raw_frames_and_arp_into_the_bridge(bridged):
    """Even from an address on an interface here (the host's): it is the host's, not ours."""
    bridged.ip("addr", "add", f"{LEASED}/24", "dev", HOST)
    socks = bridged.open(lambda: Sockets.open_port(PORT, BRIDGE, HOST_MAC))
    lan = Wire(bridged, LAN)
    probe = arp.build(arp.REQUEST, HOST_MAC, ZERO, LEASED)

    async def send() -> None:
        link = SocketLink(socks)
        await link.send(Transmit(request(1, mac=HOST_MAC), BROADCAST, ZERO))
        renew = request(2, MT.REQUEST, LEASED, HOST_MAC)
        await link.send(Transmit(renew, SERVER, LEASED, LAN_MAC))
        await link.send_arp(probe)

    bridged.run_trio(send)
    frames = lan.heard(lambda f: to_server(f) or is_arp(f), 3)
    assert len(frames) == 3 and frames[2] == probe
    discover, renew = frames[:2]
    assert discover[:12] == frame.BROADCAST_MAC + HOST_MAC
    assert ip_header(discover) == (0x45, TOS_OURS, 17, ZERO, BROADCAST)
    assert frame.parse_udp(discover, dst_port=67) == encode(request(1, mac=HOST_MAC))
    assert renew[:12] == LAN_MAC + HOST_MAC
    assert ip_header(renew) == (0x45, TOS_OURS, 17, LEASED, SERVER)
    assert socks.udp is None


# -- ARP: send_arp, receive_arp, forget_arp ----------------------------------------------------


def test_arp_goes_out_and_comes_in_and_what_queued_is_forgotten(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)
    probe = arp.build(arp.REQUEST, CLIENT_MAC, ZERO, LEASED)
    stale = [
        arp.build(arp.REPLY, OTHER_MAC, LEASED, ZERO),
        arp.build(arp.REQUEST, OTHER_MAC, ZERO, LEASED),
    ]
    fresh = arp.build(arp.REPLY, PEER_MAC, LEASED, ZERO)
    beside = veth.open(lambda: arp.open_socket(CLIENT)[0])

    async def check() -> None:
        link = SocketLink(socks)
        await link.send_arp(probe)
        assert wire.heard(is_arp, 1) == [probe]
        for data in stale:
            wire.send(data, arp.ETH_P_ARP)
        for data in stale:  # queued on the client's too, once a socket beside it has them
            readable(beside)
            assert beside.recv(128) == data
        link.forget_arp()
        wire.send(reply_frame(1))  # not ARP: never on the ARP socket
        wire.send(fresh, arp.ETH_P_ARP)
        with trio.fail_after(2):
            assert await link.receive_arp() == fresh
        no_arp = veth.open(lambda: Sockets.open(CLIENT, arp_probe=False))
        SocketLink(no_arp).forget_arp()  # nothing to forget

    veth.run_trio(check)


# -- Sockets.close, closers ----------------------------------------------------------------------


def test_close_and_closers_close_every_socket(bridged):
    bridged.ip("addr", "add", f"{LEASED}/24", "dev", HOST)
    socks = bridged.open(lambda: Sockets.open(HOST))
    bridged.run(lambda: socks.open_udp(LEASED))
    every = [socks.raw, socks.arp, socks.udp]
    socks.close()
    assert [s.fileno() for s in every if s is not None] == [-1] * 3 and socks.udp is None
    socks.close()  # twice is fine
    bare = bridged.open(lambda: Sockets.open(HOST, arp_probe=False))
    bare.close()
    assert bare.raw.fileno() == -1

    port = bridged.open(lambda: Sockets.open_port(PORT, BRIDGE, HOST_MAC))
    bridged.run(lambda: port.open_udp(LEASED))
    every = [port.raw, port.udp, port.arp, port.tx]
    closers = port.closers()
    assert len(closers) == 4  # one call per socket
    for n, close in enumerate(closers, 1):
        close()
        assert sum(s.fileno() == -1 for s in every if s is not None) == n
    assert port.udp is None
    no_arp = bridged.open(lambda: Sockets.open_port(PORT, BRIDGE, HOST_MAC, arp_probe=False))
    assert len(no_arp.closers()) == 3  # raw, the UDP one, tx


# -- probe_address ------------------------------------------------------------------------------


def test_a_free_address_is_probed_then_announced(veth):
    sock = veth.open(lambda: arp.open_socket(CLIENT)[0])
    wire = Wire(veth, PEER)
    probe = arp.build(arp.REQUEST, CLIENT_MAC, ZERO, LEASED)
    announcement = arp.build(arp.REQUEST, CLIENT_MAC, LEASED, LEASED)
    took: list[float] = []

    async def check() -> None:
        # a claim that queued up before the probe says nothing about now
        wire.send(arp.build(arp.REPLY, OTHER_MAC, LEASED, LEASED), arp.ETH_P_ARP)
        readable(sock)
        began = trio.current_time()
        with trio.fail_after(2):
            assert await probe_address(sock, CLIENT_MAC, LEASED, PROBE) is None
        took.append(trio.current_time() - began)
        assert wire.heard(is_arp, 3) == [probe, probe, announcement]
        quiet = dataclasses.replace(PROBE, announce=False)
        with trio.fail_after(2):
            assert await probe_address(sock, CLIENT_MAC, LEASED, quiet, random.Random(1)) is None
        assert wire.heard(is_arp, 2) == [probe, probe]

    veth.run_trio(check)
    assert took[0] >= 0.01 + 0.05  # the second probe after the first, then the last wait


def test_an_address_in_use_names_the_peer_that_answered(veth, caplog):
    caplog.set_level(logging.INFO, logger="dhcp.driver")
    veth.ip("addr", "add", f"{LEASED}/24", "dev", PEER)  # the peer's kernel holds it
    sock = veth.open(lambda: arp.open_socket(CLIENT)[0])
    wire = Wire(veth, PEER)

    async def check() -> None:
        with trio.fail_after(2):
            assert await probe_address(sock, CLIENT_MAC, LEASED, ANSWERED) == PEER_MAC
        heard = wire.heard(is_arp, 1)
        assert heard and arp.build(arp.REQUEST, CLIENT_MAC, LEASED, LEASED) not in heard

    veth.run_trio(check)
    assert caplog.messages == ["10.99.0.50 is in use on the link by 02:00:00:00:a0:02"]


def test_a_port_probe_goes_into_the_bridge_and_hears_the_lan(bridged):
    bridged.ip("addr", "add", f"{SERVER}/24", "dev", LAN)  # the LAN's kernel holds SERVER
    sock = bridged.open(lambda: arp.open_port_socket(PORT))
    tx = bridged.open(send_socket)
    lan = Wire(bridged, LAN)

    async def check() -> None:
        with trio.fail_after(2):
            holder = await probe_address(sock, HOST_MAC, SERVER, ANSWERED, via=(tx, BRIDGE))
            assert holder == LAN_MAC
            assert await probe_address(sock, HOST_MAC, LEASED, PROBE, via=(tx, BRIDGE)) is None
        probe = arp.build(arp.REQUEST, HOST_MAC, ZERO, LEASED)
        announcement = arp.build(arp.REQUEST, HOST_MAC, LEASED, LEASED)
        for_leased = lan.heard(lambda f: is_arp(f) and f[-4:] == LEASED.packed, 3)
        assert for_leased == [probe, probe, announcement]

    bridged.run_trio(check)


# -- a Driver over a veth, against a server scripted at its other end -------------------------


class Responder:
    """A DHCP server at the far end of the veth, on a raw socket: it OFFERs LEASED to a
    DISCOVER and ACKs each REQUEST (the first ACK with T1 = 0, so that the client renews at
    once), answers ARP for SERVER, and keeps every frame it heard in ``heard``."""

    def __init__(self, net: PrivateNet, ifname: str, mac: bytes) -> None:
        self.wire, self.ifname, self.mac = Wire(net, ifname), ifname, mac
        self.heard: list[bytes] = []
        self.acks = 0
        self.released = trio.Event()

    async def serve(self) -> None:
        rx = trio.socket.from_stdlib_socket(self.wire.rx)
        while True:
            data = await rx.recv(65536)
            if is_arp(data) or to_server(data):
                self.heard.append(data)
            asked = arp.parse(data)
            if asked is not None and asked.op == arp.REQUEST and asked.target_ip == SERVER:
                answer = arp.build(arp.REPLY, self.mac, SERVER, asked.sender_ip)
                self.wire.send(asked.sender_mac + answer[6:], arp.ETH_P_ARP)  # to the asker
            if to_server(data):
                self.answer(decode(payload(data)))

    def answer(self, msg: Message) -> None:
        if msg.message_type is MT.DISCOVER:
            kind, t1 = MT.OFFER, 30
        elif msg.message_type is MT.REQUEST:
            kind, t1 = MT.ACK, 0 if self.acks == 0 else 30
            self.acks += 1
        else:
            self.released.set()
            return
        o = {
            opt.MESSAGE_TYPE: bytes([kind]),
            opt.SERVER_ID: SERVER.packed,
            opt.LEASE_TIME: struct.pack("!I", 60),
            opt.RENEWAL_TIME: struct.pack("!I", t1),
            opt.SUBNET_MASK: IP("255.255.255.0").packed,
        }
        to = msg.ciaddr if msg.ciaddr != ZERO else BROADCAST
        reply = Message(op=BOOTREPLY, xid=msg.xid, chaddr=msg.chaddr, yiaddr=LEASED, options=o)
        data = frame.build_udp(
            encode(reply), self.mac, SERVER, to, dst_mac=msg.chaddr[:6], src_port=67, dst_port=68
        )
        self.wire.send(data)

    def kinds(self) -> list[MT | str]:
        return [
            "ARP" if is_arp(f) else (decode(payload(f)).message_type or "?") for f in self.heard
        ]


def test_a_driver_binds_renews_by_unicast_udp_and_releases_over_a_veth(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))
    server = Responder(veth, PEER, PEER_MAC)
    config = Config(
        chaddr=CLIENT_MAC,
        client_id=opt.client_id(1, opt.duid_ll(CLIENT_MAC)),
        retransmit_initial_s=0.5,
        timeout_s=5,
        probe=dataclasses.replace(PROBE, count=1),
    )
    seen: list[Action] = []
    bound_udp: list[tuple[socket.socket, object]] = []
    renewed = trio.Event()

    def on_action(action: Action) -> None:  # as Lark does: the address on the link, then off
        seen.append(action)
        if isinstance(action, LeaseBound):
            ip("addr", "add", f"{action.lease.address}/24", "dev", CLIENT)
        elif isinstance(action, LeaseRenewed):
            assert socks.udp is not None
            bound_udp.append((socks.udp, socks.udp.getsockname()))
            renewed.set()
        elif isinstance(action, LeaseLost):
            ip("addr", "del", f"{action.lease.address}/24", "dev", CLIENT)

    async def life() -> float:
        driver = Driver(Client(config, rng=random.Random(7)), socks, on_action)
        began = trio.current_time()
        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.serve)
                lease = await nursery.start(driver.run)
                assert (lease.address, lease.server_id, lease.server_mac) == (
                    LEASED,
                    SERVER,
                    PEER_MAC,
                )
                await renewed.wait()
                await driver.release()
                await server.released.wait()
                nursery.cancel_scope.cancel()
        return trio.current_time() - began

    took = veth.run_trio(life)
    kinds = [MT.DISCOVER, MT.REQUEST, "ARP", "ARP", "ARP", MT.REQUEST, MT.RELEASE]
    assert server.kinds() == kinds
    discover, request, probe, announcement, who_has, renewal, release = server.heard
    for raw in (discover, request):  # our frames, broadcast from 0.0.0.0
        assert raw[:12] == frame.BROADCAST_MAC + CLIENT_MAC
        assert ip_header(raw) == (0x45, TOS_OURS, 17, ZERO, BROADCAST)
    assert probe == arp.build(arp.REQUEST, CLIENT_MAC, ZERO, LEASED)
    assert announcement == arp.build(arp.REQUEST, CLIENT_MAC, LEASED, LEASED)
    assert arp.parse(who_has) == arp.Arp(arp.REQUEST, CLIENT_MAC, LEASED, SERVER)  # the kernel's
    for by_udp in (renewal, release):  # the kernel's, from the lease to the server
        assert by_udp[:12] == PEER_MAC + CLIENT_MAC
        assert ip_header(by_udp) == (0x45, 0, 17, LEASED, SERVER) and udp_ports(by_udp) == (68, 67)
        assert decode(payload(by_udp)).ciaddr == LEASED
    assert [type(a).__name__ for a in seen if not isinstance(a, Transmit)] == [
        "SendArp",
        "SendArp",
        "LeaseBound",
        "LeaseRenewed",
        "LeaseLost",
    ]
    [(udp, bound_to)] = bound_udp
    assert bound_to == (str(LEASED), 68)
    assert udp.fileno() == -1 and socks.udp is None  # closed with the lease
    assert took < 2
