"""Netlink event task: notices the job's veth vanishing while the job runs.

The watch socket lives in the *job's* namespace, where the only links are
loopback and the job's end of the veth: deleting either end of the pair
deletes both, so the event shows up there, and no agent is woken -- nor the
kernel made to copy events to hundreds of listeners -- by other jobs' links.
A classic BPF filter passes only RTM_DELLINK for that one index. (A bridged job's agent
also watches the bridge, from the node's namespace: each link event there runs one such
filter per agent, and wakes none of them.) What gets
through is parsed with pyroute2's marshal, imported only then, so a normal
job never pays its import time or memory.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import trio

from dhcp.bpf import attach_filter

RTMGRP_LINK = 0x1
RTM_DELLINK = 17
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


def _marshal():  # type: ignore[no-untyped-def]
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    return MarshalRtnl()


def open_link_watch(ifindex: int) -> socket.socket:
    """A netlink socket for RTM_DELLINK of ``ifindex``, in the calling thread's namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        attach_filter(sock, dellink_filter(ifindex))
        sock.bind((0, RTMGRP_LINK))
    except BaseException:
        sock.close()
        raise
    return sock


async def watch_link(
    raw: socket.socket,
    name: str,
    on_gone: Callable[[str], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_gone(name)`` once the watched link is deleted; owns and closes ``raw``."""
    with trio.socket.from_stdlib_socket(raw) as sock:
        task_status.started()
        marshal: Any = None  # (pyroute2's, loaded on the first message)
        while True:
            try:
                data = await sock.recv(65536)
            except OSError as exc:  # ENOBUFS: events were dropped; keep listening
                log.warning("netlink watch lost events: %s", exc.strerror)
                continue
            marshal = marshal or await trio.to_thread.run_sync(_marshal)
            for msg in marshal.parse(data):
                if msg["header"]["type"] == RTM_DELLINK:
                    on_gone(name)
                    await trio.sleep_forever()
