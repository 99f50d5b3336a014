"""Netlink event task: notices the job's veth vanishing while the job runs.

The socket is a ``trio.socket`` netlink socket subscribed to link events, with
a classic BPF filter that lets through only RTM_DELLINK for the job's own
interface index: with hundreds of jobs on a node every agent would otherwise
wake (and parse) for every other job's link changes, and setup of the 200th
job would crawl. What does get through is parsed with pyroute2's marshal,
imported only then, so a normal job never pays its import time or memory.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
from collections.abc import Callable

import trio

RTMGRP_LINK = 0x1
RTM_DELLINK = 17
SO_ATTACH_FILTER = 26
_NLMSG_TYPE_OFFSET = 4
_IFI_INDEX_OFFSET = 16 + 4  # nlmsghdr, then ifinfomsg family/pad/type
_LD_H_ABS, _LD_W_ABS, _JEQ_K, _RET_K = 0x28, 0x20, 0x15, 0x06

log = logging.getLogger("lark.watch")


def _net_order(fmt: str, value: int) -> int:
    """BPF absolute loads read big-endian; netlink fields are host order."""
    size = struct.calcsize(fmt)
    return int.from_bytes(struct.pack(f"={fmt}", value), "big") & ((1 << (8 * size)) - 1)


def dellink_filter(ifindex: int) -> list[tuple[int, int, int, int]]:
    """A cBPF program accepting only RTM_DELLINK messages for ``ifindex``."""
    return [
        (_LD_H_ABS, 0, 0, _NLMSG_TYPE_OFFSET),
        (_JEQ_K, 0, 3, _net_order("H", RTM_DELLINK)),
        (_LD_W_ABS, 0, 0, _IFI_INDEX_OFFSET),
        (_JEQ_K, 0, 1, _net_order("I", ifindex)),
        (_RET_K, 0, 0, 0xFFFF),
        (_RET_K, 0, 0, 0),
    ]


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    insns = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HP", len(program), ctypes.addressof(buf))  # native struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _marshal():  # type: ignore[no-untyped-def]
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    return MarshalRtnl()


async def watch_link(
    name: str,
    on_gone: Callable[[str], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_gone(name)`` when the link ``name`` (in this namespace) is deleted."""
    try:
        ifindex = socket.if_nametoindex(name)
    except OSError:  # already gone before we could watch it
        task_status.started()
        on_gone(name)
        await trio.sleep_forever()
    raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    _attach(raw, dellink_filter(ifindex))
    with trio.socket.from_stdlib_socket(raw) as sock:
        await sock.bind((0, RTMGRP_LINK))
        task_status.started()
        marshal = None
        while True:
            try:
                data = await sock.recv(65536)
            except OSError as exc:  # ENOBUFS: events were dropped; keep listening
                log.warning("netlink watch lost events: %s", exc.strerror)
                continue
            marshal = marshal or await trio.to_thread.run_sync(_marshal)
            for msg in marshal.parse(data):
                if msg["header"]["type"] == RTM_DELLINK and msg.get_attr("IFLA_IFNAME") == name:
                    on_gone(name)
                    await trio.sleep_forever()
