"""The job user's files, touched with the job user's own permissions.

Through the sudo wrapper (``lark-agent wrap``) the paths of the job's ads,
its update ad and ``$_CONDOR_WRAPPER_ERROR_FILE`` come from the job user's
environment. Root must not read or write them as root (``/etc/shadow`` as
"the job ad"), so in that mode these accesses switch the calling thread's
file-system identity to the job user (``setfsuid``, per thread; the kernel
drops root's file capabilities with it) and back.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

_libc = ctypes.CDLL(None, use_errno=True)
_owner: tuple[int, int] | None = None  # (uid, gid) in wrapper mode


def set_owner(uid: int, gid: int) -> None:
    global _owner
    _owner = (uid, gid)


@contextlib.contextmanager
def as_owner() -> Iterator[None]:
    """Within this, file access is checked as the job user (a no-op outside wrapper mode)."""
    if _owner is None:
        yield
        return
    uid, gid = _owner
    old_gid = _libc.setfsgid(gid)
    old_uid = _libc.setfsuid(uid)
    try:
        yield
    finally:
        _libc.setfsuid(old_uid)
        _libc.setfsgid(old_gid)


@contextlib.contextmanager
def as_user(uid: int, gid: int) -> Iterator[None]:
    """Within this, file access on the calling thread is checked as ``uid``/``gid`` (the job
    user's files under ``run`` too, where the starter runs the agent as root)."""
    old_gid = _libc.setfsgid(gid)
    old_uid = _libc.setfsuid(uid)
    try:
        yield
    finally:
        _libc.setfsuid(old_uid)
        _libc.setfsgid(old_gid)
