"""Netlink requests applied one at a time, each noting the requests that take it back.

A batch in one buffer is not a transaction: the kernel carries on after a refused message.
Changing the node's own network (making the site bridge from its LAN device) must either
complete or leave the node as it was, so each change is sent alone, and only once the
kernel took it is its undo noted; ``rollback`` sends the undos newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from . import rtnl

log = logging.getLogger("lark.journal")


class Journal:
    def __init__(self, channel: rtnl.Channel) -> None:
        self.channel = channel
        self.undos: list[Sequence[rtnl.Message]] = []

    def apply(self, message: rtnl.Message, undo: Sequence[rtnl.Message] = ()) -> None:
        """Send ``message``; once the kernel took it, note ``undo`` (sent in order)."""
        self.channel.request(message)
        if undo:
            self.undos.append(tuple(undo))

    def rollback(self) -> list[rtnl.RequestError]:
        """Take back everything applied, newest first; a refused undo is logged and the rest
        still run (what it leaves is named in the error)."""
        failed = []
        while self.undos:
            for message in self.undos.pop():
                try:
                    self.channel.request(message, absent_ok=message.kind in _DELETES)
                except OSError as exc:  # (refused, or the socket itself failed)
                    error = rtnl.RequestError(exc.errno or 0, message.what)
                    log.error("rolling back: %s: %s", error.what, error.strerror)
                    failed.append(error)
        return failed


_DELETES = (
    rtnl.RTM_DELLINK,
    rtnl.RTM_DELADDR,
    rtnl.RTM_DELROUTE,
    rtnl.RTM_DELRULE,
    rtnl.RTM_DELNEIGH,
)
