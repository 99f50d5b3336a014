"""Netlink requests applied one at a time, each noting the requests that take it back.

A batch in one buffer is not a transaction: the kernel carries on after a refused message.
Changing the node's own network (making the site bridge from its LAN device) must either
complete or leave the node as it was, so each change is sent alone with its undo noted
first; ``rollback`` sends the undos newest first. With a ``path`` the notes are also kept
in a file until the change is complete or taken back, so that an agent killed halfway
(SIGKILL) leaves them to the next one (``recover``), which takes the node back first. The
file names this boot and network namespace: after a reboot, or elsewhere, it means nothing.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..netlink import NetlinkError, rtnl

log = logging.getLogger("lark.journal")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class Journal:
    def __init__(self, channel: rtnl.Channel, path: Path | None = None) -> None:
        self.channel = channel
        self.path = path
        self.undos: list[Sequence[rtnl.Message]] = []

    def apply(self, message: rtnl.Message, undo: Sequence[rtnl.Message] = ()) -> None:
        """Send ``message``; ``undo`` (sent in order) takes it back. Its file knows the undo
        before the kernel has the change (a kill in between leaves an undo of nothing,
        which recovery tolerates); only the kernel's refusal takes it off again."""
        if undo:
            self._save([*self.undos, tuple(undo)])
        try:
            self.channel.request(message)
        except NetlinkError:  # refused: nothing to undo
            if undo:
                self._save(self.undos)
            raise
        except BaseException:  # interrupted: the kernel may have it
            if undo:
                self.undos.append(tuple(undo))
            raise
        if undo:
            self.undos.append(tuple(undo))

    def rollback(self, recovering: bool = False) -> list[NetlinkError]:
        """Take back everything applied, newest first; a refused undo is logged and the rest
        still run (what it leaves is named in the error). Recovering from a killed agent,
        an undo of what never happened (already there, already gone) is no error. The file
        goes either way: what could not be taken back is reported, not retried."""
        failed = []
        while self.undos:
            for message in self.undos.pop():
                try:
                    absent_ok = recovering or message.kind in _DELETES
                    self.channel.request(message, absent_ok=absent_ok)
                except OSError as exc:  # (refused, or the socket itself failed)
                    if recovering and exc.errno == errno.EEXIST:
                        continue
                    error = NetlinkError(exc.errno or 0, message.what)
                    log.error("rolling back: %s: %s", error.what, error.strerror)
                    failed.append(error)
        self.close()
        return failed

    def close(self) -> None:
        """The change is complete (or taken back): its notes go."""
        self.undos = []
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _save(self, undos: Sequence[Sequence[rtnl.Message]]) -> None:
        if self.path is None:
            return
        data = {
            "boot": _boot_id(),
            "netns": _netns_id(),
            "undos": [[_dumped(m) for m in u] for u in undos],
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def recover(cls, channel: rtnl.Channel, path: Path) -> list[NetlinkError] | None:
        """Take back what a killed agent's journal at ``path`` applied (None: there was
        none, or it belongs to another boot or namespace and is dropped)."""
        try:
            data = json.loads(_read_own(path))
            mine = data["boot"] == _boot_id() and data["netns"] == _netns_id()
            undos = [
                tuple(
                    rtnl.Message(m["kind"], m["flags"], bytes.fromhex(m["body"]), m["what"])
                    for m in u
                )
                for u in data["undos"]
            ]
            for m in (m for u in undos for m in u):
                if m.kind not in UNDO_KINDS or type(m.flags) is not int:
                    raise ValueError(f"request kind {m.kind!r} is not one a move takes back")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("dropping unreadable journal %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        if not mine:
            path.unlink(missing_ok=True)
            return None
        journal = cls(channel, path)
        journal.undos = list(undos)
        return journal.rollback(recovering=True)


# what taking back a move may send: links set, addresses, routes, rules, neighbours
UNDO_KINDS = frozenset(
    {
        rtnl.RTM_NEWLINK,
        rtnl.RTM_DELLINK,
        rtnl.RTM_NEWADDR,
        rtnl.RTM_DELADDR,
        rtnl.RTM_NEWROUTE,
        rtnl.RTM_DELROUTE,
        rtnl.RTM_NEWRULE,
        rtnl.RTM_DELRULE,
        rtnl.RTM_NEWNEIGH,
        rtnl.RTM_DELNEIGH,
    }
)
MAX_BYTES = 4 << 20


def _read_own(path: Path) -> bytes:
    """The journal is replayed as root: only a regular file of this user's (the agent's),
    writable by no one else, is read, by its descriptor, not following a final symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ValueError(f"owned by uid {st.st_uid} or writable by others")
        if st.st_size > MAX_BYTES:
            raise ValueError(f"over {MAX_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)


def _dumped(m: rtnl.Message) -> dict[str, object]:
    return {"kind": m.kind, "flags": m.flags, "body": m.body.hex(), "what": m.what}


def _boot_id() -> str:
    return BOOT_ID.read_text().strip()


def _netns_id() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


_DELETES = (
    rtnl.RTM_DELLINK,
    rtnl.RTM_DELADDR,
    rtnl.RTM_DELROUTE,
    rtnl.RTM_DELRULE,
    rtnl.RTM_DELNEIGH,
)
