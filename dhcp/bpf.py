"""Attach a classic BPF program to a socket, so the kernel drops what we would only ignore."""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26

Program = list[tuple[int, int, int, int]]  # (code, jt, jf, k) per instruction


def attach_filter(sock: socket.socket, program: Program) -> None:
    insns = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)  # the kernel copies it during the call
    fprog = struct.pack("HP", len(program), ctypes.addressof(buf))  # native struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


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
