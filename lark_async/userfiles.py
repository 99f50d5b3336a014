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
import errno
import os
import stat
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
    with as_user(*_owner):
        yield


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


class Refused(Exception):
    """Not a small regular file reached without a final symlink; the reason is the message."""


def read_regular(path: str | os.PathLike[str], limit: int, limit_shown: str) -> bytes:
    """At most ``limit`` bytes of the regular file at ``path``, for files the job side names.

    A final symlink is not followed (``O_NOFOLLOW``), a FIFO cannot hold the open
    (``O_NONBLOCK``), and the opened descriptor itself must be a regular file, so
    ``/dev/zero`` or a FIFO the caller keeps open cannot stall or swell a root process.
    Raises Refused with a reason (``limit_shown`` names the limit), FileNotFoundError when
    there is nothing there.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Refused(
            "is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        ) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise Refused(exc.strerror or str(exc)) from exc
    finally:
        os.close(fd)
    if size > limit:
        raise Refused(f"larger than {limit_shown}")
    return b"".join(chunks)
