"""Attach a classic BPF program to a socket, so the kernel drops what we would only ignore."""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003  # only sockets bound to every protocol see the frames an interface sends
PACKET_OUTGOING = 4
_LD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: the frame's direction

Program = list[tuple[int, int, int, int]]  # (code, jt, jf, k) per instruction


def attach_filter(sock: socket.socket, program: Program) -> None:
    insns = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)  # the kernel copies it during the call
    fprog = struct.pack("HP", len(program), ctypes.addressof(buf))  # native struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def outgoing_only(program: Program) -> Program:
    """``program`` run only on frames the interface sends (PACKET_OUTGOING), never on those it
    receives. On a bridge port that is what the bridge sends out of it towards the host
    behind: that host cannot make a frame travel that way, so it cannot forge what this sees."""
    return [(0x20, 0, 0, _LD_PKTTYPE), (0x15, 1, 0, PACKET_OUTGOING), (0x06, 0, 0, 0), *program]


def packet_socket(ifname: str, protocol: int, program: Program) -> socket.socket:
    """An AF_PACKET socket on one interface, filtered from its first frame.

    Made with protocol 0 and given the protocol at bind(): a socket made with a protocol
    is hooked in at once, and binding it elsewhere then waits an RCU grace period
    (synchronize_net, 5-15 ms) to unhook it.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        attach_filter(sock, program)
        sock.bind((ifname, protocol))
    except BaseException:
        sock.close()
        raise
    return sock


def send_socket() -> socket.socket:
    """An AF_PACKET socket for sending only (``sendto`` names the interface and protocol):
    bound to no protocol, it is never hooked in and never queues a received frame."""
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
