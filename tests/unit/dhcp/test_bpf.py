"""The socket filters, run on a small classic-BPF interpreter: what a port's client may hear.

A client serving the host behind a bridge port hears only frames the bridge sends out of
the port. Whatever the host behind it sends (a forged DHCP reply, an ARP answer) arrives
on the port as received, never as sent, and must never pass. At the end, the same programs
and dhcp/bpf.py's sockets in the kernel itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import struct
from collections.abc import Iterator

import pytest
from helpers.cbpf import run
from helpers.private_net import PrivateNet, private_net
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp import arp, frame
from dhcp.bpf import (
    ETH_P_ALL,
    PACKET_OUTGOING,
    Program,
    attach_filter,
    outgoing_only,
    packet_socket,
    send_socket,
)
from dhcp.message import BOOTREPLY, Message, encode
from dhcp.trio_driver import reply_filter

PACKET_HOST, PACKET_BROADCAST = 0, 1
MAC = bytes.fromhex("02aabbccddee")
OTHER = bytes.fromhex("02aabbccddef")
SERVER = ipaddress.IPv4Address("10.77.0.1")
BCAST = ipaddress.IPv4Address("255.255.255.255")


def ack(chaddr: bytes = MAC) -> bytes:
    msg = Message(op=BOOTREPLY, xid=7, chaddr=chaddr, yiaddr=ipaddress.IPv4Address("10.77.0.5"))
    return frame.build_udp(encode(msg), OTHER, SERVER, BCAST, dst_mac=MAC, src_port=67, dst_port=68)


def port_replies() -> Program:
    return outgoing_only(reply_filter(MAC))


def port_arp() -> Program:
    return outgoing_only(arp._ARP_ONLY)


def test_a_reply_the_bridge_sends_towards_the_host_is_heard():
    assert run(port_replies(), ack(), PACKET_OUTGOING) > 0
    assert run(reply_filter(MAC), ack(), PACKET_HOST) > 0  # (a client on its own interface)


@pytest.mark.parametrize("pkttype", [PACKET_HOST, PACKET_BROADCAST, 2, 3])
def test_the_same_reply_sent_by_the_host_behind_the_port_is_not(pkttype):
    assert run(port_replies(), ack(), pkttype) == 0


def test_replies_for_another_chaddr_fragments_and_other_ports_are_not_heard():
    assert run(port_replies(), ack(OTHER), PACKET_OUTGOING) == 0
    fragment = bytearray(ack())
    fragment[20:22] = b"\x00\x10"  # a later fragment (a first one is parse_udp's to drop)
    assert run(port_replies(), bytes(fragment), PACKET_OUTGOING) == 0
    request = frame.build_udp(b"x" * 300, MAC, SERVER, BCAST, src_port=68, dst_port=67)
    assert run(port_replies(), request, PACKET_OUTGOING) == 0
    far = bytes.fromhex("12aabbccddee")  # another chaddr in its first four bytes
    assert run(port_replies(), ack(far), PACKET_OUTGOING) == 0
    tcp = bytearray(ack())
    tcp[23] = 6
    assert run(port_replies(), bytes(tcp), PACKET_OUTGOING) == 0
    ipv6 = bytearray(ack())
    ipv6[12:14] = b"\x86\xdd"
    assert run(port_replies(), bytes(ipv6), PACKET_OUTGOING) == 0


def test_the_reply_filter_takes_the_first_six_bytes_of_a_longer_chaddr():
    assert reply_filter(MAC + bytes(10)) == reply_filter(MAC)  # chaddr is 16 bytes in BOOTP


def test_every_truncation_is_dropped_until_the_chaddr_is_in():
    whole = ack()
    end_of_chaddr = 14 + 20 + 8 + 28 + 6
    for cut in range(end_of_chaddr):
        assert run(port_replies(), whole[:cut], PACKET_OUTGOING) == 0, cut


def test_the_port_arp_socket_hears_only_what_the_bridge_sends_out():
    probe = arp.build(arp.REQUEST, OTHER, SERVER, SERVER)
    assert run(port_arp(), probe, PACKET_OUTGOING) > 0
    assert run(port_arp(), probe, PACKET_HOST) == 0
    assert run(port_arp(), probe, PACKET_BROADCAST) == 0
    assert run(port_arp(), ack(), PACKET_OUTGOING) == 0


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 7))
def test_fuzz_nothing_received_is_ever_heard(data, pkttype):
    heard = run(port_replies(), data, pkttype)
    if pkttype != PACKET_OUTGOING:
        assert heard == 0
    if heard:  # and only IPv4 UDP to port 68 for our chaddr
        udp = 14 + 4 * (data[14] & 0xF)
        assert data[12:14] == b"\x08\x00" and data[23] == 17
        assert data[udp + 2 : udp + 4] == b"\x00\x44" and data[udp + 36 : udp + 42] == MAC


# -- the same programs in the kernel -------------------------------------------------------
# attach_filter works on any socket: a datagram socket pair needs no privilege, and there the
# filter sees each datagram from its first byte. packet_socket and send_socket need root
# (CAP_NET_RAW); they are tried on the loopback interface of a private network namespace
# (helpers/private_net.py: new, unnamed, gone with the test), never on this machine's own,
# with an EtherType of their own (0x88b5, "local experimental") that no protocol stack takes.

FIRST_BYTE_A = [(0x30, 0, 0, 0), (0x15, 0, 1, ord("A")), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]
LOCAL_ETHERTYPE = 0x88B5
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET sockets need root")


@pytest.fixture
def net() -> Iterator[PrivateNet]:
    with private_net() as made:
        yield made


def heard(sock: socket.socket, marker: bytes = b"", wait: float = 0.0) -> list[bytes]:
    """What ``sock`` has queued (waiting up to ``wait`` for each next datagram), only those
    carrying ``marker`` when one is given."""
    out = []
    while select.select([sock], [], [], wait)[0]:
        data = sock.recv(65536)
        if marker in data:
            out.append(data)
    return out


def test_an_attached_filter_decides_what_the_socket_receives():
    with contextlib.ExitStack() as stack:
        tx, rx = (
            stack.enter_context(s) for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        )
        attach_filter(rx, FIRST_BYTE_A)
        for data in (b"Bx", b"Ay", b"\x00A", b"Az"):
            tx.send(data)
        assert heard(rx) == [b"Ay", b"Az"]


def test_the_kernel_runs_outgoing_only_as_the_model_does():
    # a datagram between two sockets is received, never sent: the filter drops it, and the
    # program behind it never runs (it would accept everything)
    with contextlib.ExitStack() as stack:
        tx, rx = (
            stack.enter_context(s) for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        )
        accept_all = [(0x06, 0, 0, 0xFFFF)]
        assert run(outgoing_only(accept_all), b"Ay", PACKET_HOST) == 0
        attach_filter(rx, outgoing_only(accept_all))
        tx.send(b"Ay")
        assert heard(rx, wait=0.05) == []


def _local_frame(marker: bytes, ethertype: int = LOCAL_ETHERTYPE) -> bytes:
    return bytes(12) + struct.pack("!H", ethertype) + marker + bytes(32)


@needs_root
def test_packet_socket_is_bound_to_its_interface_and_protocol_and_filtered_on_loopback(net):
    marker = os.urandom(8)
    only_local = [(0x28, 0, 0, 12), (0x15, 0, 1, LOCAL_ETHERTYPE), (0x06, 0, 0, 0xFFFF)]
    only_local.append((0x06, 0, 0, 0))
    rx = net.open(lambda: packet_socket("lo", ETH_P_ALL, only_local))
    tx = net.open(send_socket)
    assert (rx.family, rx.type) == (socket.AF_PACKET, socket.SOCK_RAW)
    assert rx.proto == 0  # made with no protocol: bind() gives it ETH_P_ALL
    assert rx.getsockname()[:2] == ("lo", ETH_P_ALL)
    tx.sendto(_local_frame(marker, LOCAL_ETHERTYPE + 1), ("lo", LOCAL_ETHERTYPE + 1))
    tx.sendto(_local_frame(marker), ("lo", LOCAL_ETHERTYPE))
    got = heard(rx, marker, wait=0.2)
    # on loopback a frame passes twice: as sent, then as received; the other type never
    assert [f[12:14] for f in got] == [struct.pack("!H", LOCAL_ETHERTYPE)] * 2


@needs_root
def test_outgoing_only_hears_loopback_frames_once_as_they_are_sent(net):
    marker = os.urandom(8)
    rx = net.open(lambda: packet_socket("lo", ETH_P_ALL, outgoing_only(FIRST_BYTE_A)))
    tx = net.open(send_socket)
    frame_a = b"A" + _local_frame(marker)[1:]  # destination MAC starting with "A"
    tx.sendto(frame_a, ("lo", LOCAL_ETHERTYPE))
    tx.sendto(_local_frame(marker), ("lo", LOCAL_ETHERTYPE))
    assert heard(rx, marker, wait=0.2) == [frame_a]


@needs_root
def test_send_socket_sends_but_never_queues_what_it_sees(net):
    marker = os.urandom(8)
    tx = net.open(send_socket)
    rx = net.open(lambda: packet_socket("lo", ETH_P_ALL, [(0x06, 0, 0, 0xFFFF)]))
    assert (tx.family, tx.type, tx.proto) == (socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.sendto(_local_frame(marker), ("lo", LOCAL_ETHERTYPE))
    assert heard(rx, marker, wait=0.2)  # it went out
    assert heard(tx, marker) == []  # and the sender kept nothing


@needs_root
def test_a_packet_socket_that_cannot_be_bound_is_closed_not_leaked(net):
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        net.run(lambda: packet_socket("no-such-if0", ETH_P_ALL, FIRST_BYTE_A))
    assert set(os.listdir("/proc/self/fd")) == fds
