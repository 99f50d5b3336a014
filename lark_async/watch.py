"""Netlink event task: notices the job's veth vanishing while the job runs.

The socket is a ``trio.socket`` netlink socket subscribed to link events;
pyroute2's marshal parses the bytes. pyroute2 is imported on a worker thread
once the job is already running, so its import never delays a job's start.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import trio

RTMGRP_LINK = 0x1
RTM_DELLINK = 17

log = logging.getLogger("lark.watch")


def _marshal():  # type: ignore[no-untyped-def]
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    return MarshalRtnl()


async def watch_links(
    names: set[str],
    on_gone: Callable[[str], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_gone(ifname)`` once for each watched link that is deleted."""
    sock = trio.socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    with sock:
        await sock.bind((0, RTMGRP_LINK))
        task_status.started()
        marshal = await trio.to_thread.run_sync(_marshal)
        remaining = set(names)
        while remaining:
            try:
                data = await sock.recv(65536)
            except OSError as exc:  # ENOBUFS: events were dropped; keep listening
                log.warning("netlink watch lost events: %s", exc.strerror)
                continue
            for msg in marshal.parse(data):
                if msg["header"]["type"] != RTM_DELLINK:
                    continue
                name = msg.get_attr("IFLA_IFNAME")
                if name in remaining:
                    remaining.discard(name)
                    on_gone(name)
        await trio.sleep_forever()
