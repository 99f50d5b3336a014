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
