"""The local address pool: one POSIX lock file per address pair, held for the job's life.

The kernel drops the locks (locks.py) when their holder dies, so a crashed
agent's pair frees itself. The file is unlinked while still locked, so two
agents can never both believe they hold one pair.

A free lock is not enough: a finished job's veth goes with its namespace,
which the kernel deletes a few milliseconds after the agent has moved on
(and released the lock). Until then that veth still holds the pair's
external address, so a pair whose external address is still local to the
host is skipped.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from ..decide.names import external_interface
from ..errors import ResourceError, map_errors
from . import locks
from .netlink import rtnl
from .netns import Addresses, Addresses6

MAX_SCAN = 1 << 16  # pairs an allocation looks at, at most


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Pair = Addresses | Addresses6
P = TypeVar("P", Addresses, Addresses6)


def pool_pairs(network: ipaddress.IPv4Network) -> list[Addresses]:
    """(external, internal) pairs of the network, skipping the network and broadcast addresses."""
    return [pool_pair(network, k) for k in range(pool_size(network))]


def pool_size(network: Network) -> int:
    return max(0, network.num_addresses // 2 - 2)


@overload
def pool_pair(network: ipaddress.IPv4Network, k: int) -> Addresses: ...
@overload
def pool_pair(network: ipaddress.IPv6Network, k: int) -> Addresses6: ...
def pool_pair(network: Network, k: int) -> Pair:
    """Pair k of the pool: the pair holding the network address is skipped (the last pair,
    holding the broadcast address, is beyond pool_size). IPv6 the same way: its first pair
    would hold the subnet-router anycast address."""
    base = int(network.network_address) + 2 * (k + 1)
    if isinstance(network, ipaddress.IPv6Network):
        return Addresses6(ipaddress.IPv6Address(base), ipaddress.IPv6Address(base + 1))
    return Addresses(ipaddress.IPv4Address(base), ipaddress.IPv4Address(base + 1))


def lock_path(lock_dir: Path, addresses: Pair) -> Path:
    return lock_dir / f"addr-{addresses.external}.lock"


@dataclass
class AddressLease(Generic[P]):
    addresses: P
    path: Path
    fd: int

    def release(self) -> None:
        """Unlink while locked, then close: the next locker of this path gets a fresh inode."""
        release_lock(self.path, self.fd)


def release_lock(path: Path, fd: int | None) -> None:
    path.unlink(missing_ok=True)
    if fd is not None:
        os.close(fd)


def _left_by_a_dead_agent(fd: int, name: str, state_dir: Path | None) -> bool:
    """The lock of a SIGKILLed agent dies with it, but its veth, routes and rules for this
    pair stay until ``cleanup``: a pair whose last owner still has a state record or a veth
    is not free, though its lock is."""
    try:
        owner = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        return False
    if len(owner) < 2 or owner[1] == name:
        return False
    job = owner[1]
    if state_dir is not None and (state_dir / f"{job}.json").exists():
        return True
    try:
        socket.if_nametoindex(external_interface(job))
    except OSError:
        return False
    return True


@overload
def allocate(
    network: ipaddress.IPv4Network,
    lock_dir: Path,
    name: str,
    state_dir: Path | None = None,
    setting: str = "LARK_LOCAL_NETWORK",
) -> AddressLease[Addresses]: ...
@overload
def allocate(
    network: ipaddress.IPv6Network,
    lock_dir: Path,
    name: str,
    state_dir: Path | None = None,
    setting: str = "LARK_LOCAL_NETWORK",
) -> AddressLease[Addresses6]: ...
def allocate(
    network: Network,
    lock_dir: Path,
    name: str,
    state_dir: Path | None = None,
    setting: str = "LARK_LOCAL_NETWORK",
) -> AddressLease[Any]:
    """Lock the first free pair, scanning from a point derived from the job name.

    Starting at a name-derived offset keeps concurrent agents from all
    fighting over the lowest pair, so setup time does not grow with the
    number of jobs already running. ``setting`` names the pool in errors. An IPv6
    pool (2^63 pairs in a /64) is scanned for ``MAX_SCAN`` pairs at most: beyond that,
    something other than jobs holds them.
    """
    size = pool_size(network)
    if size <= 0:
        raise ResourceError(f"{setting} {network} has no address pairs")
    with map_errors(f"create lock dir {lock_dir}", ResourceError):
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % size
    with rtnl.Channel() as host:
        for i in range(min(size, MAX_SCAN)):
            addresses = pool_pair(network, (start + i) % size)
            path = lock_path(lock_dir, addresses)
            with map_errors(f"lock {path}", ResourceError):
                fd = locks.try_lock(path)
            if fd is None:
                continue
            if _left_by_a_dead_agent(fd, name, state_dir):
                os.close(fd)  # unlocks: the sweeper will take it
                continue
            if host.is_local(addresses.external):  # a veth the kernel has yet to delete
                release_lock(path, fd)
                continue
            with map_errors(f"write {path}", ResourceError):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {name}\n".encode())
            return AddressLease(addresses, path, fd)
    raise ResourceError(
        f"address pool {setting} {network} is exhausted: all {min(size, MAX_SCAN)} "
        f"pairs {'are' if size <= MAX_SCAN else 'looked at are'} in use "
        "(pairs of dead agents come back with `lark-agent cleanup --orphans`)"
    )


def is_locked(path: Path) -> bool:
    """Whether a live agent holds this lock file (used by cleanup before unlinking it)."""
    return locks.is_locked(path)
