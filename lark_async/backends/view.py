"""The job's own ``/etc/resolv.conf`` and ``/etc/hosts``: files Lark writes, bind-mounted
over the node's in a mount namespace of the job's own. The node's files are never touched.

The mount namespace is made on the throwaway thread that forks the job (job/process.py),
after it joined the job's network namespace and before the fork, so the job and all it
starts have it and nothing else does; it goes when the job's last process does. Mounts
become slaves of the node's (``MS_REC | MS_SLAVE``, as iproute2's ``ip netns exec`` does
in ``netns_switch``): what the node mounts later (autofs, CVMFS repositories) still
reaches the job, what is mounted in the job's namespace never reaches the node, and
everything the starter had mounted for the job (``MOUNT_UNDER_SCRATCH``) is inherited.

The files live in ``<state dir>/<job>.view/`` (root's, recorded, removed with the job).
A change (a renewed lease with other DNS servers) rewrites a file in place, so the bind
mount, which holds the inode, shows it at once; glibc rereads resolv.conf when it changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ResourceError, map_errors

log = logging.getLogger("lark.view")

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_SLAVE = 0x1000, 0x4000, 1 << 19
VIEW_SUFFIX = ".view"
TARGETS = {"resolv.conf": Path("/etc/resolv.conf"), "hosts": Path("/etc/hosts")}
MAX_READ = 64 * 1024
_libc = ctypes.CDLL(None, use_errno=True)


def view_dir(state_dir: Path, job: str) -> Path:
    return state_dir / f"{job}{VIEW_SUFFIX}"


def read_node_file(path: Path) -> str | None:
    """One of the node's own files, bounded (None: there is none)."""
    try:
        with open(path, "rb") as f:
            return f.read(MAX_READ).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s): the job gets the node's", path, exc.strerror)
        return None


@dataclass
class ViewFiles:
    """The job's files in its directory; ``write`` keeps each file's inode."""

    dir: Path

    def write(self, name: str, text: str) -> bool:
        """Write ``name`` (``resolv.conf`` or ``hosts``) if its text changed; True if it did."""
        assert name in TARGETS
        data = text.encode()
        path = self.dir / name
        with map_errors(f"write the job's {name} ({path})", ResourceError):
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                os.fchmod(fd, 0o644)  # (readable by the job's user, whatever the umask)
                if os.pread(fd, len(data) + 1, 0) == data:
                    return False
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
        return True

    def binds(self) -> list[tuple[Path, Path]]:
        """(file, node path it covers) for each file written so far."""
        return [(self.dir / n, t) for n, t in TARGETS.items() if (self.dir / n).exists()]


def discard(dir: Path) -> None:
    """The job's files and directory; absent is done."""
    for name in TARGETS:
        with contextlib.suppress(FileNotFoundError):
            (dir / name).unlink()
    with contextlib.suppress(FileNotFoundError):
        dir.rmdir()


def _check(result: int, doing: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{doing}: {os.strerror(err)}")


def enter_own_mounts(binds: Sequence[tuple[Path, Path]]) -> list[str]:
    """On the thread that forks the job: a mount namespace of its own, slave to the node's,
    with each file bound over the node path it covers. Returns what could not be covered,
    for the caller to log: a node without that file (nothing to bind over, and Lark never
    creates files in the node's /etc), or a file on a mount this namespace cannot make a
    slave (below). Raises ResourceError when the namespace cannot be made.

    Where ``/`` is not a mount point (the agent runs in a chroot) it cannot be made a slave
    by name: each mount this namespace can name is made one instead, and a file on a mount
    it cannot name (the one holding the chroot) is not covered, since a bind there could
    reach the node's own view if that mount is shared."""
    with map_errors("make the job's mount namespace", ResourceError):
        _check(_libc.unshare(CLONE_NEWNS), "unshare")
        if _libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None) == 0:
            slaves = None  # (every mount: all of them are the job's own now)
        elif ctypes.get_errno() == errno.EINVAL:
            slaves = _each_mount_a_slave()
        else:
            _check(-1, "make / a slave")
    skipped: list[str] = []
    for source, target in binds:
        if slaves is not None and _mount_of(target) not in slaves:
            skipped.append(f"{target} (/ is not a mount point, as in a chroot: the mount "
                           "holding it cannot be made the job's own)")  # fmt: skip
            continue
        if _libc.mount(bytes(source), bytes(target), None, MS_BIND, None) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.ENOENT:
            skipped.append(f"{target} (the node has none)")
            continue
        raise ResourceError(f"bind the job's {source.name} over {target}: {os.strerror(err)}")
    return skipped


def _mountinfo() -> list[tuple[int, bytes]]:
    """(mount id, mount point) of each mount this thread can name (mountinfo leaves out
    those outside its root), mount points unescaped (``\\040`` for a space)."""
    found = []
    with open("/proc/thread-self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ")
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[4])
            found.append((int(fields[0]), point))
    return found


def _each_mount_a_slave() -> set[int]:
    """Every mount this namespace can name made a slave; their ids."""
    made = set()
    for mount_id, point in _mountinfo():
        if _libc.mount(b"none", point, None, MS_SLAVE, None) == 0:
            made.add(mount_id)
    return made


def _mount_of(path: Path) -> int | None:
    """The id of the mount ``path`` is on (its fdinfo's ``mnt_id``)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(f"/proc/thread-self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    return None
