"""How many jobs one user may run through ``wrap`` at once.

The sudo rule lets every local user start ``lark-agent wrap``; without a bound
one user holding ``wrap -- sleep`` agents takes every address pair of the pool
and every other user's job fails. Each agent started through ``wrap`` holds one
of the caller's LARK_MAX_JOBS_PER_USER slot locks for its whole life (the same
lock files as the address pool: they free themselves when their holder dies).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ResourceError, map_errors
from . import locks


@dataclass
class UserSlot:
    path: Path
    fd: int

    def release(self) -> None:
        locks.release(self.path, self.fd)


def slot_path(lock_dir: Path, uid: int, k: int) -> Path:
    return lock_dir / f"user-{uid}.{k}.lock"


def hold_user_slot(lock_dir: Path, uid: int, user: str, limit: int) -> UserSlot:
    """Take a free slot of ``uid`` or refuse the job: the user runs ``limit`` jobs already."""
    with map_errors(f"create lock dir {lock_dir}", ResourceError):
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for k in range(limit):
        path = slot_path(lock_dir, uid, k)
        with map_errors(f"lock {path}", ResourceError):
            fd = locks.try_lock(path)
        if fd is None:
            continue
        with map_errors(f"write {path}", ResourceError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return UserSlot(path, fd)
    raise ResourceError(
        f"user {user} already runs {limit} jobs through Lark on this node (LARK_MAX_JOBS_PER_USER)"
    )
