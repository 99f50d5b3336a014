"""The socket filters, run on a small classic-BPF interpreter: what a port's client may hear.

A client serving the host behind a bridge port hears only frames the bridge sends out of
the port. Whatever the host behind it sends (a forged DHCP reply, an ARP answer) arrives
on the port as received, never as sent, and must never pass.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp import arp, frame
from dhcp.bpf import PACKET_OUTGOING, Program, outgoing_only
from dhcp.message import BOOTREPLY, Message, encode
from dhcp.trio_driver import reply_filter

PACKET_HOST, PACKET_BROADCAST = 0, 1
MAC = bytes.fromhex("02aabbccddee")
OTHER = bytes.fromhex("02aabbccddef")
SERVER = ipaddress.IPv4Address("10.77.0.1")
BCAST = ipaddress.IPv4Address("255.255.255.255")


def run(program: Program, data: bytes, pkttype: int) -> int:
    """Classic BPF as the kernel runs it on a socket, for the instructions our filters use;
    a load past the end of the frame drops it."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        try:
            if code == 0x20 and k == 0xFFFFF004:  # ld #pkttype
                a = pkttype
            elif code == 0x20:  # ld [k] (word)
                a = struct.unpack_from("!I", data, k)[0]
            elif code == 0x28:  # ldh [k]
                a = struct.unpack_from("!H", data, k)[0]
            elif code == 0x30:  # ldb [k]
                a = data[k]
            elif code == 0x40:  # ld [x + k]
                a = struct.unpack_from("!I", data, x + k)[0]
            elif code == 0x48:  # ldh [x + k]
                a = struct.unpack_from("!H", data, x + k)[0]
            elif code == 0xB1:  # ldxb 4 * ([k] & 0xf)
                x = 4 * (data[k] & 0x0F)
            elif code == 0x15:  # jeq #k
                pc += jt if a == k else jf
            elif code == 0x45:  # jset #k
                pc += jt if a & k else jf
            elif code == 0x06:  # ret #k
                return k
            else:
                raise AssertionError(f"instruction {code:#x} not modelled")
        except (IndexError, struct.error):
            return 0


def ack(chaddr: bytes = MAC) -> bytes:
    msg = Message(op=BOOTREPLY, xid=7, chaddr=chaddr, yiaddr=ipaddress.IPv4Address("10.77.0.5"))
    return frame.build_udp(encode(msg), OTHER, SERVER, BCAST, dst_mac=MAC, src_port=67, dst_port=68)


PORT_REPLIES = outgoing_only(reply_filter(MAC))
PORT_ARP = outgoing_only(arp._ARP_ONLY)


def test_a_reply_the_bridge_sends_towards_the_host_is_heard():
    assert run(PORT_REPLIES, ack(), PACKET_OUTGOING) > 0
    assert run(reply_filter(MAC), ack(), PACKET_HOST) > 0  # (a client on its own interface)


@pytest.mark.parametrize("pkttype", [PACKET_HOST, PACKET_BROADCAST, 2, 3])
def test_the_same_reply_sent_by_the_host_behind_the_port_is_not(pkttype):
    assert run(PORT_REPLIES, ack(), pkttype) == 0


def test_replies_for_another_chaddr_fragments_and_other_ports_are_not_heard():
    assert run(PORT_REPLIES, ack(OTHER), PACKET_OUTGOING) == 0
    fragment = bytearray(ack())
    fragment[20:22] = b"\x00\x10"  # a later fragment (a first one is parse_udp's to drop)
    assert run(PORT_REPLIES, bytes(fragment), PACKET_OUTGOING) == 0
    request = frame.build_udp(b"x" * 300, MAC, SERVER, BCAST, src_port=68, dst_port=67)
    assert run(PORT_REPLIES, request, PACKET_OUTGOING) == 0


def test_every_truncation_is_dropped_until_the_chaddr_is_in():
    whole = ack()
    end_of_chaddr = 14 + 20 + 8 + 28 + 6
    for cut in range(end_of_chaddr):
        assert run(PORT_REPLIES, whole[:cut], PACKET_OUTGOING) == 0, cut


def test_the_port_arp_socket_hears_only_what_the_bridge_sends_out():
    probe = arp.build(arp.REQUEST, OTHER, SERVER, SERVER)
    assert run(PORT_ARP, probe, PACKET_OUTGOING) > 0
    assert run(PORT_ARP, probe, PACKET_HOST) == 0
    assert run(PORT_ARP, probe, PACKET_BROADCAST) == 0
    assert run(PORT_ARP, ack(), PACKET_OUTGOING) == 0


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 7))
def test_fuzz_nothing_received_is_ever_heard(data, pkttype):
    heard = run(PORT_REPLIES, data, pkttype)
    if pkttype != PACKET_OUTGOING:
        assert heard == 0
    if heard:  # and only IPv4 UDP to port 68 for our chaddr
        udp = 14 + 4 * (data[14] & 0xF)
        assert data[12:14] == b"\x08\x00" and data[23] == 17
        assert data[udp + 2 : udp + 4] == b"\x00\x44" and data[udp + 36 : udp + 42] == MAC
