"""Classic BPF as the kernel runs it on a socket, for the instructions Lark's filters use: a
model to run a filter on frames without a kernel (dhcp/'s and dhcp6/'s tests run the same
programs in the kernel too, and check the two agree)."""

from __future__ import annotations

import struct

Program = list[tuple[int, int, int, int]]
SKF_AD_PKTTYPE = 0xFFFFF004  # ld #pkttype (SKF_AD_OFF + SKF_AD_PKTTYPE)


def run(program: Program, data: bytes, pkttype: int) -> int:
    """What ``program`` returns for ``data`` received as ``pkttype`` (0: drop). A load past
    the end of the frame drops it, and so does one at a negative offset other than the
    packet type's (the kernel's ancillary loads, which no filter here means to use)."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        try:
            if code == 0x20 and k == SKF_AD_PKTTYPE:  # ld #pkttype
                a = pkttype
            elif code in (0x20, 0x28, 0x30, 0x40, 0x48) and not 0 <= k < 1 << 31:
                return 0
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
