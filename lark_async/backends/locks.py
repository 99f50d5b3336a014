"""Lock files: open-file-description locks that die with their holder, and the job-name lock.

An OFD lock (``F_OFD_SETLK``) is released by the kernel when its holder dies,
like a POSIX ``fcntl`` lock, but it also conflicts within one process (an
in-process bench holds many). A holder that is done unlinks the file while
still holding it; whoever opened the old inode notices (its inode is not the
path's any more) and tries the new one, so two holders can never both believe
they hold one path.

Every agent holds the lock on ``job-<name>.lock`` for its whole life: taken
before its state record exists and before any resource, dropped after the
last one is gone. The sweeper removes nothing of a job without holding the
same lock, so it never removes what a live agent uses, whatever it read
before. An agent locks the file's first byte, a sweeper its first two: an
agent that finds its name locked can tell a sweeper (which lets go within
its removal; wait) from another agent (the name is in use).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from ..errors import ResourceError, map_errors

_FLOCK = struct.Struct("=hhqqi4x")  # struct flock: type, whence, start, len, pid
WHOLE = 0  # a length of 0 locks the whole file, however long it grows
AGENT_SPAN, SWEEPER_SPAN = 1, 2


def _lock(fd: int, length: int) -> None:
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, length, 0))


def try_lock(path: Path, length: int = WHOLE, create: bool = True) -> int | None:
    """An fd holding the lock on ``[0, length)`` of the file now at ``path``; None when
    someone holds a conflicting lock (or, with ``create`` False, there is no file)."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    while True:
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            if create:
                raise
            return None
        try:
            _lock(fd, length)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            if not create:
                os.close(fd)
                return None
        os.close(fd)  # we locked a file its holder just unlinked: try the new one


def is_locked(path: Path, length: int = WHOLE) -> bool:
    """Whether someone holds a lock on ``path`` (a probe: takes it for a moment)."""
    fd = try_lock(path, length, create=False)
    if fd is None:
        return path.exists()
    os.close(fd)
    return False


def release(path: Path, fd: int) -> None:
    """Unlink while holding, then close: the next locker of this path gets a fresh inode."""
    path.unlink(missing_ok=True)
    os.close(fd)


def _held_span(fd: int) -> int | None:
    """The length of the lock that keeps ``fd`` from the first byte; None if there is none."""
    query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, AGENT_SPAN, 0)
    kind, _whence, _start, length, _pid = _FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, query))
    return None if kind == fcntl.F_UNLCK else length


# -- the job-name lock ---------------------------------------------------------------------


def job_lock_path(lock_dir: Path, name: str) -> Path:
    return lock_dir / f"job-{name}.lock"


def take_job_lock(lock_dir: Path, name: str) -> int | None:
    """The agent's lock on its job name: an fd to hold for the agent's life; None while a
    sweeper holds it (ask again shortly). Raises ResourceError while another agent holds it."""
    path = job_lock_path(lock_dir, name)
    with map_errors(f"create lock dir {lock_dir}", ResourceError):
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with map_errors(f"lock {path}", ResourceError):
        fd = try_lock(path, AGENT_SPAN)
        if fd is not None:
            return fd
        try:
            probe = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None  # its holder just let go
        try:
            span = _held_span(probe)
        finally:
            os.close(probe)
    if span is None or span >= SWEEPER_SPAN:
        return None
    raise ResourceError(f"job name {name} is in use by a running agent (it holds {path})")


@contextlib.contextmanager
def job_claimed(lock_dir: Path, name: str) -> Iterator[bool]:
    """The sweeper's hold on a job name for one removal: yields False when the job's agent
    is alive (then nothing of it may be touched); the lock file goes afterwards."""
    path = job_lock_path(lock_dir, name)
    with map_errors(f"lock {path}"):
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = try_lock(path, SWEEPER_SPAN)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        release(path, fd)


def job_alive(lock_dir: Path, name: str) -> bool:
    """Whether an agent (or another sweeper) holds the job's name now."""
    return is_locked(job_lock_path(lock_dir, name), SWEEPER_SPAN)
