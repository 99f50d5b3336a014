"""A private network namespace for a kernel-level unit test: new, unnamed, gone with the test.

``PrivateNet.run(fn)`` runs ``fn`` on a fresh thread inside the namespace; the first call
makes it (``unshare(CLONE_NEWNET)`` on that thread, then ``ip link set lo up``), later ones
enter it (``setns``). So a socket ``fn`` opens belongs to the namespace, and so does every
process it starts (``ip(...)``: a child forked from a thread inherits the thread's
namespace). The thread ends afterwards (lark_async.backends.netns.in_fresh_thread), so no
other code ever runs in there. The namespace has no name: it lives while ``fd`` (kept to
enter it again) and the sockets made in it are open, and the kernel frees it, its veths
with it, once they are closed.

``private_net()`` is the context a test uses: it closes what the test kept (``keep``) and
the namespace's fd, then checks that nothing is left: no descriptor the test opened, no
thread or process in the namespace, no name for it (/run/netns, what ``ip netns`` lists),
and none of its links ever seen in the test's own namespace. The caller's namespace is
never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

import pytest
import trio

from lark_async.backends.netns import NETNS_RUN_DIR, in_fresh_thread, setns

CLONE_NEWNET = 0x40000000
ETH_P_ALL, LOCAL_ETHERTYPE = 0x0003, 0x88B5
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")
C = TypeVar("C", bound="Closeable")


class Closeable(Protocol):
    def close(self) -> None: ...


def ip(*args: str, batch: list[str] | None = None) -> str:
    """``ip ARGS`` in the calling thread's namespace (call it inside ``PrivateNet.run``);
    with ``batch``, ``ip -batch -`` runs those command lines, in one process."""
    if batch is not None:
        args = ("-batch", "-", *args)
    stdin = "".join(f"{line}\n" for line in batch or ())
    done = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)} {batch or ''}: {done.stderr.strip()}")
    return done.stdout


def _inode(link: str) -> int | None:
    """The inode of a namespace link such as net:[4026532390], or None if it is gone."""
    try:
        return int(os.readlink(link).split("[")[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return None


class PrivateNet:
    def __init__(self) -> None:
        self.fd: int | None = None
        self.inode = 0
        self.links: list[str] = []  # the links made in it, never to be seen outside it
        self._kept: list[Closeable] = []

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a fresh thread inside the namespace (made by the first call)."""

        def entered() -> T:
            if self.fd is None:
                if _libc.unshare(CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"unshare: {os.strerror(err)}")
                fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                self.fd, self.inode = fd, os.fstat(fd).st_ino
                ip("link", "set", "lo", "up")
            else:
                setns(self.fd)
            return fn()

        return in_fresh_thread(entered)

    def run_trio(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``trio.run(fn)`` inside the namespace: what the code under test opens as it runs
        (a UDP socket on the leased address) is opened there."""
        return self.run(lambda: trio.run(fn))

    def ip(self, *args: str, batch: list[str] | None = None) -> str:
        return self.run(lambda: ip(*args, batch=batch))

    def veth(self, name: str, mac: str, peer: str, peer_mac: str) -> None:
        """A veth pair, both ends up, with the MACs given."""
        self.links += [name, peer]
        self.ip(
            batch=[
                f"link add {name} address {mac} type veth peer name {peer} address {peer_mac}",
                f"link set {name} up",
                f"link set {peer} up",
            ]
        )
        assert not {name, peer} & own_links(), "made in the caller's namespace"
        self.await_passing(name, peer)
        self.await_passing(peer, name)

    def bridge(self, name: str, *ports: str) -> None:
        """A bridge (no STP: its ports forward at once) with ``ports``, up."""
        self.links.append(name)
        self.ip(
            batch=[
                f"link add {name} type bridge stp_state 0",
                *(f"link set {port} master {name}" for port in ports),
                f"link set {name} up",
            ]
        )
        for port in ports:  # (what the bridge sends out of a port shows on the port)
            self.await_passing(name, port)

    def await_passing(self, src: str, dst: str, timeout_s: float = 2.0) -> None:
        """Until a frame sent on link ``src`` shows on link ``dst``. A veth's end that came
        up while its peer was down gets its transmit queue only once the kernel's link
        watch sees the carrier, and until then drops what is sent (``ip link`` tells
        nothing of it; the operational state, ``state UP``, comes with it, but a bridge's may
        come a second later than its queue). Frames of a type of their own (0x88b5, local
        experimental), before any socket of the test is open."""
        marker = os.urandom(8)
        data = b"\xff" * 6 + bytes(6) + struct.pack("!H", LOCAL_ETHERTYPE) + marker + bytes(32)

        def passing() -> None:
            with (
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as rx,
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as tx,
            ):
                rx.bind((dst, ETH_P_ALL))
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    tx.sendto(data, (src, LOCAL_ETHERTYPE))
                    while select.select([rx], [], [], 0.01)[0]:
                        if marker in rx.recv(2048):
                            return
                raise AssertionError(f"no frame passes from {src} to {dst}")

        self.run(passing)

    def keep(self, thing: C) -> C:
        """Close ``thing`` (a socket, Sockets, ...) when the namespace goes."""
        self._kept.append(thing)
        return thing

    def open(self, fn: Callable[[], C]) -> C:
        """``fn()`` run in the namespace (see ``run``), kept to be closed at the end."""
        return self.keep(self.run(fn))

    def close(self) -> None:
        try:
            while self._kept:
                self._kept.pop().close()
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def holders(self, wait_s: float = 1.0) -> list[str]:
        """The threads (of any process) in the namespace, and the names given to it, once
        there are none or after ``wait_s`` (a joined thread's task lingers a moment while
        the kernel ends it)."""
        deadline = time.monotonic() + wait_s
        while (found := self._holders()) and time.monotonic() < deadline:
            time.sleep(0.005)
        return found

    def _holders(self) -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:  # (gone meanwhile)
                continue
            for tid in tasks:
                if _inode(f"/proc/{pid}/task/{tid}/ns/net") == self.inode:
                    found.append(f"/proc/{pid}/task/{tid}")
        if NETNS_RUN_DIR.is_dir():
            for name in NETNS_RUN_DIR.iterdir():
                with contextlib.suppress(OSError):
                    if name.stat().st_ino == self.inode:
                        found.append(str(name))
        return found


def _open_fds() -> set[str]:
    """This process's descriptors, each with what it is (a socket: socket:[inode])."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the listing's own, closed by now)
            found.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


def own_links() -> set[str]:
    """The links of the calling thread's namespace."""
    return {name for _, name in socket.if_nameindex()}


@contextlib.contextmanager
def private_net() -> Iterator[PrivateNet]:
    """A PrivateNet for the test; afterwards, nothing of it may be left (see the module)."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    fds = _open_fds()
    net = PrivateNet()
    try:
        net.run(lambda: None)  # made now: the test's own descriptors are what it opens
        yield net
    finally:
        net.close()
    assert not set(net.links) & own_links(), "a link of the test in its caller's namespace"
    held = net.holders(wait_s=1.0)
    assert not held, f"something still holds the namespace: {held}"
    assert _open_fds() <= fds, f"left open: {sorted(_open_fds() - fds)}"
