"""dhcp6's trio driver in the kernel: Sockets, PortSockets, UdpLink, PortLink and the reply
filter on veths and a bridge in a private network namespace (helpers/private_net.py: new,
unnamed, gone with the test), and Driver runs over a veth and from a bridge port's side
against a DHCPv6 server scripted at the far end.

Links are made without the kernel's link-local addresses (``addrgenmode none``) and given
fixed ones without DAD, so each test knows its addresses and waits for no DAD but those it
means; where it means one, it makes the namespace's DAD quick (``quick_dad``). Each test's
async part runs inside the namespace (``PrivateNet.run_trio``). Frames come and go through
the far end of each link (``Wire``): what the client sends is read there, exactly, and
what the client must or must not hear is sent from there. Needs root (skipped otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import random
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from helpers.cbpf import run as run_bpf
from helpers.private_net import PrivateNet, ip, private_net

from dhcp.bpf import ETH_P_ALL, PACKET_OUTGOING, outgoing_only, packet_socket, send_socket
from dhcp6 import frame, ifaddr, trio_driver
from dhcp6 import options as opt
from dhcp6.client import Client, State
from dhcp6.config import Config
from dhcp6.duid import duid_ll
from dhcp6.errors import Dhcp6Failed
from dhcp6.events import (
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
    Action,
    LeaseBound,
    LeaseLost,
    Transmit,
)
from dhcp6.lease import Lease
from dhcp6.message import Message, decode, encode
from dhcp6.trio_driver import (
    PACKET_AUXDATA,
    SO_BINDTODEVICE,
    SOL_PACKET,
    Driver,
    LinkLocalError,
    PortLink,
    PortSockets,
    Sockets,
    UdpLink,
    render_pktinfo,
    reply_filter,
)

MT = opt.MessageType
IP6 = ipaddress.IPv6Address
GROUP = ALL_DHCP_RELAY_AGENTS_AND_SERVERS
PACKET_HOST = 0
_SFX = os.urandom(2).hex()  # the links live in the test's namespace only; unique all the same
CLIENT, PEER = f"k6c{_SFX}", f"k6s{_SFX}"  # a veth: the client's end, and the server's
OTHER, OTHER_PEER = f"k6o{_SFX}", f"k6q{_SFX}"  # another veth in the same namespace
MANY, MANY_PEER = f"k6m{_SFX}", f"k6n{_SFX}"  # one made later, for many addresses
PORT, HOST = f"k6p{_SFX}", f"k6h{_SFX}"  # a bridge port, and the host behind it
UPLINK, LAN = f"k6u{_SFX}", f"k6l{_SFX}"  # another port, and the LAN behind that
BRIDGE = f"k6b{_SFX}"
# MACs whose first four and last two bytes have their top bit set: read as signed numbers,
# they would match nothing
CLIENT_MAC, PEER_MAC = bytes.fromhex("a200000ca001"), bytes.fromhex("a200000ca002")
OTHER_MAC, OTHER_PEER_MAC = bytes.fromhex("a200000cc001"), bytes.fromhex("a200000cc002")
HOST_MAC, LAN_MAC = bytes.fromhex("a200000cb001"), bytes.fromhex("a200000cb002")
PORT_MAC, UPLINK_MAC = bytes.fromhex("a200000cb011"), bytes.fromhex("a200000cb012")
CLIENT_LL, PEER_LL = IP6("fe80::a001"), IP6("fe80::a002")
OTHER_LL, OTHER_PEER_LL = IP6("fe80::c001"), IP6("fe80::c002")
HOST_LL, LAN_LL = IP6("fe80::b001"), IP6("fe80::b002")
ADDR, ADDR2, ADDR3 = IP6("2001:db8:6::50"), IP6("2001:db8:6::51"), IP6("2001:db8:6::52")
SERVER_DUID = duid_ll(PEER_MAC)
IAID = 7
QUIET = 0.05  # the wait for frames (or orders) beyond those expected


@pytest.fixture
def net() -> Iterator[PrivateNet]:
    with private_net() as made:
        yield made


def pair(
    net: PrivateNet,
    name: str,
    mac: bytes,
    ll: IP6 | None,
    peer: str,
    peer_mac: bytes,
    peer_ll: IP6 | None,
) -> None:
    """A veth pair, both ends up, with the MACs given, and only the link-local addresses
    given (without DAD: usable at once)."""
    net.links += [name, peer]
    lines = [f"link add {name} address {mac.hex(':')} type veth peer name {peer}"]
    lines[0] += f" address {peer_mac.hex(':')}"
    for dev, address in ((name, ll), (peer, peer_ll)):
        lines.append(f"link set {dev} addrgenmode none")
        if address is not None:
            lines.append(f"addr add {address}/64 dev {dev} nodad")
        lines.append(f"link set {dev} up")
    net.ip(batch=lines)
    net.await_passing(name, peer)
    net.await_passing(peer, name)


@pytest.fixture
def veth(net: PrivateNet) -> PrivateNet:
    pair(net, CLIENT, CLIENT_MAC, CLIENT_LL, PEER, PEER_MAC, PEER_LL)
    return net


@pytest.fixture
def bridged(net: PrivateNet) -> PrivateNet:
    """BRIDGE with two ports: PORT, with the host (HOST) behind it, pinned there as Lark
    pins a job's MAC, and UPLINK to the LAN. The ports themselves have no IPv6 address."""
    pair(net, PORT, PORT_MAC, None, HOST, HOST_MAC, HOST_LL)
    pair(net, UPLINK, UPLINK_MAC, None, LAN, LAN_MAC, LAN_LL)
    net.bridge(BRIDGE, PORT, UPLINK)
    pin = ["bridge", "fdb", "replace", HOST_MAC.hex(":"), "dev", PORT, "master", "static"]
    net.run(lambda: subprocess.run(pin, check=True, capture_output=True))
    return net


def knob(net: PrivateNet, ifname: str, name: str, value: str) -> None:
    """An IPv6 setting of a link of the namespace (/proc/sys/net is the namespace of the
    thread that opens it: a thread in there)."""
    net.run(lambda: Path(f"/proc/sys/net/ipv6/conf/{ifname}/{name}").write_text(value))


def quick_dad(net: PrivateNet, ifname: str) -> None:
    """DAD at once (no random delay before it) and over in 0.1 s, and an address added as
    optimistic (as Lark adds a lease's) is probed at once too."""
    knob(net, ifname, "router_solicitation_delay", "0")
    knob(net, ifname, "optimistic_dad", "1")
    net.ip("ntable", "change", "name", "ndisc_cache", "dev", ifname, "retrans", "100")


def churn(ifname: str, count: int = 40) -> None:
    """Many address notices at once (call it inside the namespace): on a socket whose
    buffer is small, they overflow it."""
    ip(batch=[f"addr add 2001:db8:ff::{n:x}/128 dev {ifname} nodad" for n in range(1, count)])


@contextlib.contextmanager
def small_buffer(sock: socket.socket) -> Iterator[None]:
    """The socket's receive buffer at its least (two or three notices) for a while."""
    before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    try:
        yield
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, before // 2)


def fds() -> set[str]:
    """This process's descriptors, and what each is."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the listing's own, closed by now)
            found.add(f"{fd}: {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


def open_port(net: PrivateNet) -> PortSockets:
    """The host's PortSockets, closed when the namespace goes."""
    port = net.run(lambda: PortSockets.open(PORT, BRIDGE, HOST_MAC))
    net.keep(port.raw)
    net.keep(port.tx)
    return port


def readable(sock: socket.socket, wait: float = 1.0) -> None:
    assert select.select([sock], [], [], wait)[0], "nothing queued"


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

    def send(self, data: bytes) -> None:
        self.tx.sendto(data, (self.ifname, frame.ETH_P_IPV6))

    def heard(self, want: Callable[[bytes], bool], count: int, wait: float = 2.0) -> list[bytes]:
        """The wanted frames that came, once ``count`` came (or ``wait`` passed), and any
        more within the next QUIET seconds."""
        out: list[bytes] = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic() if len(out) < count else QUIET
            if not select.select([self.rx], [], [], max(left, 0))[0]:
                return out
            data = self.rx.recv(65536)
            if want(data):
                out.append(data)


def to_server(data: bytes) -> bool:
    """IPv6 UDP to port 547 (the checksum unchecked: the kernel's is left to offload)."""
    return frame.parse_udp(data, dst_port=547, check_udp=False) is not None


def payload(data: bytes) -> bytes:
    got = frame.parse_udp(data, dst_port=547, check_udp=False)
    assert got is not None
    return got


def ip6_header(data: bytes) -> tuple[int, int, IP6, IP6]:
    """(next header, hop limit, source, destination) of an IPv6 frame."""
    nxt, hops, src, dst = struct.unpack_from("!6xBB16s16s", data, 14)
    return nxt, hops, IP6(src), IP6(dst)


def udp_ports(data: bytes) -> tuple[int, int]:
    return struct.unpack_from("!HH", data, 14 + 40)


def from_server(
    data: bytes,
    to_mac: bytes = CLIENT_MAC,
    to: IP6 = CLIENT_LL,
    mac: bytes = PEER_MAC,
    src: IP6 = PEER_LL,
    port: int = 546,
) -> bytes:
    """A server's datagram to a client's port, as a whole frame (good checksums)."""
    return frame.build_udp(data, mac, src, to, dst_mac=to_mac, src_port=547, dst_port=port)


def answer(
    to: Message,
    addresses: tuple[IP6, ...] = (ADDR,),
    lifetimes: tuple[int, int, int, int] = (100, 160, 200, 300),  # T1, T2, preferred, valid
    rapid: bool = False,
    xid: int | None = None,
) -> bytes:
    """A server's REPLY to ``to``: one IA_NA with these addresses (RAPID_COMMIT to a
    SOLICIT when ``rapid``)."""
    t1, t2, preferred, valid = lifetimes
    client = to.get(opt.ClientId)
    assert client is not None
    inner = tuple(opt.IaAddress(a, preferred, valid) for a in addresses)
    o: list[opt.Option] = [
        opt.ServerId(SERVER_DUID),
        opt.ClientId(client.duid),
        opt.IaNa(IAID, t1, t2, inner),
    ]
    if rapid:
        o.append(opt.RapidCommit())
    return encode(Message(MT.REPLY, to.xid if xid is None else xid, tuple(o)))


class Server6:
    """A DHCPv6 server at the far end of a link, on a raw socket: ``script`` gives the
    payloads it answers each message with, sent to the asker's MAC and link-local address.
    Every frame to port 547 it heard is in ``heard``."""

    def __init__(
        self,
        net: PrivateNet,
        ifname: str,
        script: Callable[[Message], list[bytes]],
        mac: bytes = PEER_MAC,
        ll: IP6 = PEER_LL,
    ) -> None:
        self.wire, self.script, self.mac, self.ll = Wire(net, ifname), script, mac, ll
        self.heard: list[bytes] = []

    async def serve(self) -> None:
        rx = trio.socket.from_stdlib_socket(self.wire.rx)
        while True:
            data = await rx.recv(65536)
            if not to_server(data):
                continue
            self.heard.append(data)
            src = ip6_header(data)[2]
            for reply in self.script(decode(payload(data))):
                self.wire.send(from_server(reply, data[6:12], src, self.mac, self.ll))

    async def wait_heard(self, count: int) -> None:
        while len(self.heard) < count:
            await trio.sleep(0.005)

    def kinds(self) -> list[MT]:
        return [decode(payload(f)).msg_type for f in self.heard]


def make_client(mac: bytes = CLIENT_MAC, **kw: float) -> Client:
    kw.setdefault("solicit_delay_max_s", 0.0)
    kw.setdefault("timeout_s", 5.0)
    config = Config(duid=duid_ll(mac), iaid=IAID, **kw)  # type: ignore[arg-type]
    return Client(config, rng=random.Random(6))


def sent(actions: list[Action]) -> list[Message]:
    return [a.message for a in actions if isinstance(a, Transmit)]


def check_sent_by_the_kernel(frames: list[bytes], messages: list[Message]) -> None:
    """Each frame is the kernel's UDP from the client's link-local address out of its
    interface to ff02::1:2 port 547, hop limit 1, carrying that message."""
    assert len(frames) == len(messages)
    for data, msg in zip(frames, messages, strict=True):
        assert data[:14] == frame.multicast_mac(GROUP) + CLIENT_MAC + b"\x86\xdd"
        assert ip6_header(data) == (17, 1, CLIENT_LL, GROUP) and udp_ports(data) == (546, 547)
        assert payload(data) == encode(msg)


# -- the reply filter: the model, then the kernel ------------------------------------------------

GOOD = from_server(b"\x07\x00\x00\x01abc")


def spoilt(offset: int, value: bytes) -> bytes:
    f = bytearray(GOOD)
    f[offset : offset + len(value)] = value
    return bytes(f)


NOT_HEARD = {
    "for another MAC (its last two bytes)": from_server(b"\x07", CLIENT_MAC[:4] + b"\xa0\x09"),
    "for another MAC (its first four bytes)": from_server(b"\x07", b"\x22" + CLIENT_MAC[1:]),
    "IPv4": spoilt(12, b"\x08\x00"),
    "with an extension header (hop-by-hop)": spoilt(14 + 6, b"\x00"),
    "TCP": spoilt(14 + 6, b"\x06"),
    "to the server's port": from_server(b"\x07", port=547),
    "to port 545": from_server(b"\x07", port=545),
}


def test_the_reply_filter_passes_udp_to_port_546_for_the_mac_and_nothing_else():
    program = reply_filter(CLIENT_MAC)
    assert run_bpf(program, GOOD, PACKET_HOST) >= len(GOOD)
    for why, data in NOT_HEARD.items():
        assert run_bpf(program, data, PACKET_HOST) == 0, why
    for cut in range(14 + 40 + 4):  # every frame cut before its destination port is in
        assert run_bpf(program, GOOD[:cut], PACKET_HOST) == 0, cut
    # from a bridge port's side: only what the bridge sends out of the port
    port = outgoing_only(program)
    assert run_bpf(port, GOOD, PACKET_OUTGOING) >= len(GOOD)
    assert run_bpf(port, GOOD, PACKET_HOST) == 0


def test_the_kernel_runs_the_reply_filter_as_the_model_does(veth):
    """What the filter drops is never queued: the first frame the socket has is the good
    one sent after them all."""
    sock = veth.open(lambda: packet_socket(CLIENT, ETH_P_ALL, reply_filter(CLIENT_MAC)))
    wire = Wire(veth, PEER)
    for data in NOT_HEARD.values():
        wire.send(data)
    wire.send(GOOD[: 14 + 40 + 3])
    wire.send(GOOD)
    readable(sock)
    assert sock.recv(65536) == GOOD


def test_render_pktinfo_is_the_address_then_the_index_in_host_order():
    assert render_pktinfo(CLIENT_LL, 0x01020304) == CLIENT_LL.packed + struct.pack("=I", 0x01020304)


# -- Sockets -----------------------------------------------------------------------------------


def test_open_binds_port_546_on_the_interface_and_watches_ipv6_addresses(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))
    index = veth.run(lambda: socket.if_nametoindex(CLIENT))
    assert (socks.ifname, socks.index, socks.port) == (CLIENT, index, None)
    udp = socks.udp
    assert udp is not None and (udp.family, udp.type) == (socket.AF_INET6, socket.SOCK_DGRAM)
    assert udp.getsockname()[:2] == ("::", 546)
    v6 = socket.IPPROTO_IPV6
    assert udp.getsockopt(v6, socket.IPV6_V6ONLY) == 1
    assert udp.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 16).rstrip(b"\0") == CLIENT.encode()
    assert udp.getsockopt(v6, socket.IPV6_MULTICAST_IF) == index
    assert udp.getsockopt(v6, socket.IPV6_MULTICAST_HOPS) == 1
    assert udp.getsockopt(v6, socket.IPV6_MULTICAST_LOOP) == 0  # its own SOLICITs stay out
    assert (socks.rtnl.family, socks.rtnl.proto) == (socket.AF_NETLINK, 0)  # NETLINK_ROUTE
    assert socks.rtnl.getsockname()[1] == ifaddr.RTMGRP_IPV6_IFADDR
    # a second client in the namespace (another interface) has netlink sockets of its own
    other = veth.open(lambda: Sockets.watch(PEER))
    assert (other.ifname, other.udp, other.port) == (PEER, None, None)
    assert other.rtnl.getsockname()[0] != socks.rtnl.getsockname()[0]


def test_sockets_that_fail_to_open_close_what_they_opened(bridged, monkeypatch):
    def another_client() -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::", 546))
        return sock

    bridged.open(another_client)
    before = fds()
    with pytest.raises(OSError):
        bridged.run(lambda: Sockets.open("no-such-if0"))
    with pytest.raises(OSError) as taken:
        bridged.run(lambda: Sockets.open(HOST))
    assert taken.value.errno == errno.EADDRINUSE
    assert fds() == before

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EMFILE, "refused")

    monkeypatch.setattr(trio_driver, "send_socket", refuse)
    with pytest.raises(OSError, match="refused"):
        bridged.run(lambda: PortSockets.open(PORT, BRIDGE, HOST_MAC))
    assert fds() == before


def test_closers_close_each_socket_once(bridged):
    socks = bridged.open(lambda: Sockets.open(HOST))
    every = [socks.rtnl, socks.udp]
    closers = socks.closers()
    assert len(closers) == 2  # one call per socket
    for n, close in enumerate(closers, 1):
        close()
        assert sum(s is not None and s.fileno() == -1 for s in every) == n
    watch = bridged.open(lambda: Sockets.watch(HOST))
    assert len(watch.closers()) == 1
    watch.port = bridged.run(lambda: PortSockets.open(PORT, BRIDGE, HOST_MAC))
    every = [watch.rtnl, watch.port.raw, watch.port.tx]
    assert len(watch.closers()) == 3
    watch.close()
    assert [s.fileno() for s in every] == [-1] * 3


# -- UdpLink -------------------------------------------------------------------------------------


def test_a_udp_link_multicasts_from_the_address_given_out_of_its_interface(veth):
    beef = IP6("fe80::beef")
    veth.ip("addr", "add", f"{beef}/64", "dev", CLIENT, "nodad")  # a second link-local
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)

    async def send() -> None:
        link = UdpLink(socks)
        assert link.sockets is socks
        await link.send(b"\x01\x00\x00\x01", beef, GROUP)
        await link.send(b"\x01\x00\x00\x02", CLIENT_LL, GROUP)

    veth.run_trio(send)
    first, second = wire.heard(to_server, 2)
    for data, src in ((first, beef), (second, CLIENT_LL)):
        assert data[:14] == frame.multicast_mac(GROUP) + CLIENT_MAC + b"\x86\xdd"
        assert ip6_header(data) == (17, 1, src, GROUP) and udp_ports(data) == (546, 547)
    assert payload(first) == b"\x01\x00\x00\x01" and payload(second) == b"\x01\x00\x00\x02"


def test_a_udp_link_hears_its_port_on_its_interface_only(veth):
    pair(veth, OTHER, OTHER_MAC, OTHER_LL, OTHER_PEER, OTHER_PEER_MAC, OTHER_PEER_LL)
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire, other = Wire(veth, PEER), Wire(veth, OTHER_PEER)

    async def hear() -> None:
        link = UdpLink(socks)
        # to this namespace, port 546, but on another interface
        other.send(
            from_server(b"\x07elsewhere", OTHER_MAC, OTHER_LL, OTHER_PEER_MAC, OTHER_PEER_LL)
        )
        wire.send(from_server(b"\x07here"))
        with trio.fail_after(2):
            assert await link.receive() == b"\x07here"

    veth.run_trio(hear)
    assert udp_queued(socks) == []


def udp_queued(socks: Sockets) -> list[bytes]:
    """What the client's UDP socket still has, within QUIET seconds."""
    assert socks.udp is not None
    out = []
    while select.select([socks.udp], [], [], QUIET)[0]:
        out.append(socks.udp.recv(65536))
    return out


# -- PortSockets, PortLink -----------------------------------------------------------------------


def test_a_port_link_hears_only_good_replies_the_bridge_sends_out_of_the_port(bridged):
    port = open_port(bridged)
    assert (port.port, port.bridge, port.mac) == (PORT, BRIDGE, HOST_MAC)
    assert port.raw.getsockname()[:2] == (PORT, ETH_P_ALL)
    assert port.raw.getsockopt(SOL_PACKET, PACKET_AUXDATA) == 1
    assert (port.tx.family, port.tx.proto) == (socket.AF_PACKET, 0)
    host, lan = Wire(bridged, HOST), Wire(bridged, LAN)

    def to_host(data: bytes) -> bytes:
        return from_server(data, HOST_MAC, HOST_LL, LAN_MAC, LAN_LL)

    bad_sum = bytearray(to_host(b"\x07bad sum"))
    bad_sum[-1] ^= 0xFF

    async def hear() -> None:
        link = PortLink(port)
        assert link.port is port
        with trio.fail_after(2):
            host.send(from_server(b"\x07forged", HOST_MAC, HOST_LL, HOST_MAC, LAN_LL))
            lan.send(from_server(b"\x07not ours", LAN_MAC, LAN_LL, UPLINK_MAC, HOST_LL))
            lan.send(bytes(bad_sum))
            lan.send(to_host(b"\x07good"))
            assert await link.receive() == b"\x07good"

    bridged.run_trio(hear)


def test_a_port_link_takes_a_reply_whose_checksum_the_kernel_left_to_offload(bridged):
    """A reply sent by the kernel's UDP on the LAN: its checksum is not filled in yet when the
    bridge sends it out of the port (PACKET_AUXDATA: TP_STATUS_CSUMNOTREADY)."""
    port = open_port(bridged)
    seen = bridged.open(
        lambda: packet_socket(PORT, ETH_P_ALL, outgoing_only(reply_filter(HOST_MAC)))
    )
    bridged.ip("neigh", "replace", str(HOST_LL), "lladdr", HOST_MAC.hex(":"), "dev", LAN)

    def send_as_a_server() -> None:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
            udp.bind((str(LAN_LL), 547, 0, socket.if_nametoindex(LAN)))
            udp.sendto(b"\x07offloaded", (str(HOST_LL), 546, 0, socket.if_nametoindex(LAN)))

    async def hear() -> None:
        bridged.run(send_as_a_server)
        with trio.fail_after(2):
            assert await PortLink(port).receive() == b"\x07offloaded"

    bridged.run_trio(hear)
    readable(seen)  # and it was not a good frame in itself: its UDP checksum is not filled in
    data = seen.recv(65536)
    assert (
        frame.parse_udp(data) is None and frame.parse_udp(data, check_udp=False) == b"\x07offloaded"
    )


def test_a_port_link_handed_a_socket_without_auxdata_checks_every_checksum(bridged):
    raw = bridged.open(
        lambda: packet_socket(PORT, ETH_P_ALL, outgoing_only(reply_filter(HOST_MAC)))
    )
    tx = bridged.open(send_socket)
    lan = Wire(bridged, LAN)
    bad_sum = bytearray(from_server(b"\x07bad sum", HOST_MAC, HOST_LL, LAN_MAC, LAN_LL))
    bad_sum[-1] ^= 0xFF

    async def hear() -> None:
        link = PortLink(PortSockets(PORT, BRIDGE, HOST_MAC, raw, tx))
        lan.send(bytes(bad_sum))
        lan.send(from_server(b"\x07good", HOST_MAC, HOST_LL, LAN_MAC, LAN_LL))
        with trio.fail_after(2):
            assert await link.receive() == b"\x07good"

    bridged.run_trio(hear)


def test_a_port_link_sends_whole_frames_into_the_bridge_as_the_host(bridged):
    port = open_port(bridged)
    lan = Wire(bridged, LAN)

    async def send() -> None:
        await PortLink(port).send(b"\x01\x00\x00\x01", HOST_LL, GROUP)

    bridged.run_trio(send)
    assert lan.heard(to_server, 1) == [
        frame.build_udp(b"\x01\x00\x00\x01", HOST_MAC, HOST_LL, GROUP)
    ]


# -- Driver: the link-local address --------------------------------------------------------------


def test_the_driver_waits_for_a_usable_link_local_address_or_says_why_not(net):
    """None at all; one still tentative after the wait, then usable once DAD is done; one
    whose DAD failed; with no wait, one usable now. And a driver that never ran releases
    nothing."""
    pair(net, CLIENT, CLIENT_MAC, None, PEER, PEER_MAC, PEER_LL)
    pair(net, OTHER, OTHER_MAC, None, OTHER_PEER, OTHER_PEER_MAC, OTHER_PEER_LL)
    for ifname in (CLIENT, OTHER):
        quick_dad(net, ifname)
    socks = net.open(lambda: Sockets.open(CLIENT))
    other = net.open(lambda: Sockets.open(OTHER))
    peer = net.open(lambda: Sockets.open(PEER))
    wire = Wire(net, PEER)

    async def check() -> None:
        driver = Driver(make_client(), socks, link_local_wait_s=0.3)
        why: list[str] = []

        async def run() -> None:
            with pytest.raises(LinkLocalError) as none:
                await driver.run()
            why.append(str(none.value))

        began = trio.current_time()
        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await trio.sleep(0.05)  # (waiting by now)
                with small_buffer(socks.rtnl):
                    churn(PEER)  # notices overflow its socket meanwhile: it goes on waiting
        assert why == [f"{CLIENT} has no IPv6 link-local address (is IPv6 off on it?)"]
        assert 0.3 <= trio.current_time() - began < 1.0
        with trio.fail_after(0.5):
            await driver.release()  # it never ran: nothing to release, nobody to ask

        ip("addr", "add", f"{CLIENT_LL}/64", "dev", CLIENT)  # DAD: 0.1 s
        ip("addr", "add", f"{OTHER_PEER_LL}/64", "dev", OTHER)  # held by its peer
        with pytest.raises(LinkLocalError) as tentative:
            await Driver(make_client(), socks, link_local_wait_s=0.02).wait_link_local()
        assert str(tentative.value) == (
            f"the link-local address {CLIENT_LL} of {CLIENT} is still tentative after 0.02 s"
        )
        with trio.fail_after(2):
            assert await Driver(make_client(), socks).wait_link_local() == CLIENT_LL
            with pytest.raises(LinkLocalError) as failed:
                await Driver(make_client(), other).wait_link_local()
            assert (
                await Driver(make_client(), peer, link_local_wait_s=0).wait_link_local() == PEER_LL
            )
        assert str(failed.value) == f"the link-local address {OTHER_PEER_LL} of {OTHER} failed DAD"

    net.run_trio(check)
    assert wire.heard(to_server, 1, wait=QUIET) == []


def test_the_link_local_address_is_found_in_a_long_dump_after_lost_notices(veth):
    """A dump that comes in several datagrams (many addresses on a link listed after the
    client's), asked for when notices overflowed the socket (ENOBUFS): read whole."""
    pair(veth, MANY, OTHER_MAC, None, MANY_PEER, OTHER_PEER_MAC, None)
    socks = veth.open(lambda: Sockets.open(CLIENT))
    with small_buffer(socks.rtnl):
        veth.run(lambda: churn(MANY, 400))

        async def check() -> None:
            with trio.fail_after(2):
                driver = Driver(make_client(), socks, link_local_wait_s=0.3)
                assert await driver.wait_link_local() == CLIENT_LL

        veth.run_trio(check)


# -- Driver: a lease's life --------------------------------------------------------------------


def test_a_driver_binds_declines_a_dad_failure_and_releases_over_a_veth(veth):
    """As Lark does it: the lease's addresses go on the interface (optimistic DAD, so a
    conflict shows at once); a DAD failure of a leased address there (not elsewhere, not
    hidden by lost notices) is DECLINEd and a new lease asked for; the release is answered
    and ends the run. Every message is the kernel's UDP from the link-local address."""
    pair(veth, OTHER, OTHER_MAC, OTHER_LL, OTHER_PEER, OTHER_PEER_MAC, OTHER_PEER_LL)
    for ifname in (CLIENT, OTHER):
        quick_dad(veth, ifname)
    veth.ip("addr", "add", f"{ADDR}/128", "dev", OTHER_PEER, "nodad")  # in use over there
    veth.ip("addr", "add", f"{ADDR2}/128", "dev", PEER, "nodad")  # in use on the client's link
    socks = veth.open(lambda: Sockets.open(CLIENT))
    leases = iter([(ADDR, ADDR2), (ADDR3,)])

    def script(msg: Message) -> list[bytes]:
        if msg.msg_type is MT.SOLICIT:
            return [answer(msg, next(leases), rapid=True)]
        return [answer(msg, ())]  # to the DECLINE and the RELEASE

    server = Server6(veth, PEER, script)
    seen: list[Action] = []

    def on_action(action: Action) -> None:  # the lease's first address on the link, then off
        seen.append(action)
        if isinstance(action, LeaseBound):
            ip("addr", "add", f"{action.lease.address}/128", "dev", CLIENT, "nodad")
        elif isinstance(action, LeaseLost):
            ip("addr", "flush", "dev", CLIENT, "scope", "global")

    driver = Driver(make_client(solicit_delay_max_s=0.05), socks, on_action)
    ran: list[str] = []
    took: list[float] = []

    async def run(task_status: trio.TaskStatus[Lease] = trio.TASK_STATUS_IGNORED) -> None:
        await driver.run(task_status=task_status)
        ran.append("returned")

    async def life() -> None:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.serve)
                lease = await nursery.start(run)
                assert [a.address for a in lease.addresses] == [ADDR, ADDR2]
                assert lease.server_duid == SERVER_DUID and driver.lease == lease
                # the first address fails DAD on another interface: nothing to do with us
                ip("addr", "add", f"{ADDR}/128", "dev", OTHER, "optimistic")
                while "dadfailed" not in ip("-6", "addr", "show", "dev", OTHER):
                    await trio.sleep(0.005)
                await trio.sleep(QUIET)
                assert server.kinds() == [MT.SOLICIT]
                with small_buffer(socks.rtnl):  # notices overflow the watch: it goes on
                    churn(PEER)
                await trio.sleep(QUIET)
                ip("addr", "add", f"{ADDR2}/128", "dev", CLIENT, "optimistic")  # in use: DECLINE
                await server.wait_heard(3)
                while driver.lease is None or driver.lease.address != ADDR3:
                    await trio.sleep(0.005)
                began = trio.current_time()
                await driver.release()
                took.append(trio.current_time() - began)
                while not ran:  # the run ends with the release
                    await trio.sleep(0.005)
                nursery.cancel_scope.cancel()

    veth.run_trio(life)
    assert server.kinds() == [MT.SOLICIT, MT.DECLINE, MT.SOLICIT, MT.RELEASE]
    check_sent_by_the_kernel(server.heard, sent(seen))
    declined = decode(payload(server.heard[1])).get(opt.IaNa)
    assert declined is not None and [a.address for a in declined.addresses] == [ADDR2]
    assert [type(a).__name__ for a in seen if not isinstance(a, Transmit)] == [
        "LeaseBound",
        "LeaseLost",
        "LeaseBound",
        "LeaseLost",
    ]
    assert [a.reason for a in seen if isinstance(a, LeaseLost)] == ["declined", "released"]
    assert driver.lease is None and driver.failure is None
    assert driver.client.state is State.RELEASED and driver.client.next_deadline is None
    assert took[0] < 0.5  # answered at once, and returned at once


def test_no_lease_within_the_timeout_is_dhcp6failed_saying_what_was_heard(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)
    driver = Driver(make_client(timeout_s=0.3), socks)
    failed: list[Dhcp6Failed] = []

    async def run() -> None:
        with trio.fail_after(2), pytest.raises(Dhcp6Failed) as raised:
            await driver.run()
        failed.append(raised.value)

    veth.run_trio(run)
    assert str(failed[0]) == "no lease after 0.3 s: no server answered" == driver.failure
    assert driver.lease is None and driver.client.state is State.FAILED
    assert len(wire.heard(to_server, 1)) == 1  # one SOLICIT: the next would be after 1 s


def test_a_release_before_any_lease_ends_the_run_with_nothing_sent(veth):
    socks = veth.open(lambda: Sockets.open(CLIENT))
    wire = Wire(veth, PEER)
    solicited = trio.Event()
    driver = Driver(make_client(), socks, lambda action: solicited.set())
    ran: list[str] = []

    async def run() -> None:
        await driver.run()
        ran.append("returned")

    async def check() -> None:
        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await solicited.wait()
                await driver.release()
            await driver.release()  # again, after the run: nothing more

    veth.run_trio(check)
    assert ran == ["returned"] and driver.failure is None and driver.lease is None
    assert driver.client.state is State.RELEASED
    [solicit] = wire.heard(to_server, 1)
    assert decode(payload(solicit)).msg_type is MT.SOLICIT


def test_a_release_after_the_run_was_cancelled_is_sent_again_until_answered(veth):
    """A job's nursery ends before its teardown releases: the driver carries the release
    out itself, and waits for the answer to its own transaction."""
    socks = veth.open(lambda: Sockets.open(CLIENT))
    releases: list[Message] = []

    def script(msg: Message) -> list[bytes]:
        if msg.msg_type is MT.SOLICIT:
            return [answer(msg, rapid=True)]
        releases.append(msg)
        if len(releases) == 1:
            return []  # lost
        return [answer(msg, (), xid=msg.xid ^ 1), answer(msg, ())]  # another's, then ours

    server = Server6(veth, PEER, script)
    driver = Driver(make_client(), socks)
    took: list[float] = []

    async def check() -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(server.serve)
            with trio.fail_after(2):
                async with trio.open_nursery() as inner:
                    lease = await inner.start(driver.run)
                    assert lease.address == ADDR
                    inner.cancel_scope.cancel()
            began = trio.current_time()
            with trio.fail_after(4):
                await driver.release(wait_s=3)
            took.append(trio.current_time() - began)
            outer.cancel_scope.cancel()

    veth.run_trio(check)
    assert server.kinds() == [MT.SOLICIT, MT.RELEASE, MT.RELEASE]
    assert releases[0].xid == releases[1].xid
    assert 0.8 < took[0] < 2.0  # the second RELEASE one RT (about 1 s) after the first
    assert driver.client.next_deadline is None and driver.lease is None


def test_a_release_on_a_link_that_is_gone_is_logged_not_raised(veth, caplog):
    caplog.set_level(logging.INFO, logger="dhcp6.driver")
    socks = veth.open(lambda: Sockets.open(CLIENT))
    server = Server6(veth, PEER, lambda msg: [answer(msg, rapid=True)])
    driver = Driver(make_client(), socks)
    took: list[float] = []

    async def check() -> None:
        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.serve)
                await nursery.start(driver.run)
                nursery.cancel_scope.cancel()
        ip("link", "del", CLIENT)
        began = trio.current_time()
        with trio.fail_after(2):
            await driver.release(wait_s=0.2)
        took.append(trio.current_time() - began)

    veth.run_trio(check)
    assert caplog.messages == [
        f"cannot send RELEASE on {CLIENT}: [Errno {errno.ENODEV}] {os.strerror(errno.ENODEV)}"
    ]
    assert 0.2 <= took[0] < 1.0 and driver.lease is None


def test_a_driver_from_a_bridge_port_speaks_as_the_host_and_hears_only_the_lan(bridged):
    """A bridged job's client: frames into the bridge as the host (its MAC, its link-local
    address); a reply forged by the host behind the port is never heard. The lease never
    ends: no timer runs until the release."""
    watch = bridged.open(lambda: Sockets.watch(HOST))
    watch.port = open_port(bridged)
    host = Wire(bridged, HOST)
    forever = (opt.INFINITY,) * 4

    def script(msg: Message) -> list[bytes]:
        if msg.msg_type is MT.SOLICIT:  # the host answers first, as if it were the server
            forged = answer(msg, (ADDR2,), forever, rapid=True)
            host.send(from_server(forged, HOST_MAC, HOST_LL, HOST_MAC, LAN_LL))
            return [answer(msg, (ADDR,), forever, rapid=True)]
        return [answer(msg, ())]

    server = Server6(bridged, LAN, script, LAN_MAC, LAN_LL)
    seen: list[Action] = []
    driver = Driver(make_client(HOST_MAC), watch, seen.append)

    async def life() -> None:
        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.serve)
                lease = await nursery.start(driver.run)
                assert lease.address == ADDR and lease.expires_at == float("inf")
                assert driver.client.next_deadline is None
                await driver.release()
                nursery.cancel_scope.cancel()

    bridged.run_trio(life)
    assert server.kinds() == [MT.SOLICIT, MT.RELEASE]
    assert server.heard == [
        frame.build_udp(encode(m), HOST_MAC, HOST_LL, GROUP) for m in sent(seen)
    ]
    assert driver.lease is None and driver.client.next_deadline is None
