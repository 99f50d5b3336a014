"""What root may take as root's own: a file that only root can have written or swapped.

An ownership check of a *path* proves nothing: between the check and the use,
whoever may write a directory on the way can swap what the path names (a
symlink, a FIFO, another file). So a file is trusted only when it is opened
component by component from ``/`` with ``O_NOFOLLOW`` and every descriptor on
the way is checked with ``fstat``: each directory root's and writable by no
one else (or sticky, like ``/tmp``, where others cannot rename root's entries),
the file itself a regular file of root's that no one else may write. Symlinks
(``/bin`` on merged-/usr systems, ``/usr/local/sbin/lark-agent``) are followed
by the walk itself, each only once the directory holding it has been checked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque

from .errors import ConfigError


def _others_may_write(st: os.stat_result) -> bool:
    """Anyone but root (and root's own group, gid 0) may write it."""
    return bool(st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0))


_MAX_LINKS = 40  # as the kernel allows in one path (MAXSYMLINKS)


def _why_untrusted_dir(st: os.stat_result) -> str | None:
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != 0:
        return "is not owned by root"
    if _others_may_write(st) and not st.st_mode & stat.S_ISVTX:
        return "is writable by others than root"
    return None


def _why_untrusted_file(st: os.stat_result) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != 0:
        return "is not owned by root"
    if _others_may_write(st):
        return "is writable by others than root"
    return None


def open_root_file(path: str, what: str, flags: int = os.O_RDONLY) -> int:
    """An fd of ``path`` opened through a chain of root's directories; ConfigError otherwise.

    The path is walked a component at a time from ``/``; a symlink is followed only after
    the directory holding it was checked (nobody else could have swapped it), so every
    directory on the way *and* on the way of each link is checked. ``flags`` may add e.g.
    ``O_PATH`` (for a program that is only executed, never read).
    """
    if not path.startswith("/") or "\0" in path:
        raise ConfigError(f"{what} {path!r} is not an absolute path")
    todo = deque(path.split("/"))
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    walked, links = "/", 0
    try:
        while True:
            why = _why_untrusted_dir(os.fstat(fd))
            if why is not None:
                raise ConfigError(f"{what} {path}: directory {walked} {why}")
            while todo and todo[0] in ("", "."):
                todo.popleft()
            if not todo:
                raise ConfigError(f"{what} {path} is not a file")
            part = todo.popleft()
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                    target = os.readlink(part, dir_fd=fd)
                    todo.extendleft(reversed(target.split("/")))
                    if target.startswith("/"):
                        os.close(fd)
                        fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                        walked = "/"
                    continue
                last = not any(p not in ("", ".") for p in todo)
                opened = flags if last else os.O_PATH | os.O_DIRECTORY
                nxt = os.open(part, opened | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                shown = exc.strerror or str(exc)
                if exc.errno == errno.ELOOP:
                    shown = "too many symbolic links, or one appeared while it was checked"
                raise ConfigError(f"{what} {path}: {shown}") from exc
            os.close(fd)
            fd = nxt
            walked = os.path.normpath(os.path.join(walked, part))
            if last:
                break
        why = _why_untrusted_file(os.fstat(fd))
        if why is not None:
            shown = f"{path} ({walked})" if walked != os.path.normpath(path) else path
            raise ConfigError(f"{what} {shown} {why}")
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def check_root_file(path: str, what: str) -> os.stat_result:
    """Check ``path`` as :func:`open_root_file` does and return its final ``fstat``."""
    fd = open_root_file(path, what, os.O_PATH)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)
