"""helpers/private_net.py, checked: its namespace is a new one, what is made in it stays in
it, and a test that leaves anything of it behind fails."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from helpers.private_net import PrivateNet, own_links, private_net

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root")
SUFFIX = os.urandom(2).hex()


def _ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_a_private_net_is_new_keeps_its_links_and_leaves_nothing():
    a, b = f"kpa{SUFFIX}", f"kpb{SUFFIX}"
    with private_net() as net:
        assert net.inode not in (0, _ns_inode())
        assert net.run(_ns_inode) == net.inode  # every run is in the same one
        net.veth(a, "02:00:00:00:0c:01", b, "02:00:00:00:0c:02")
        inside = net.run(lambda: {name for _, name in socket.if_nameindex()})
        assert {"lo", a, b} <= inside and not {a, b} & own_links()
        assert "UP" in net.ip("-br", "link", "show", "lo")  # loopback up, by ip(8) in there
        assert net.holders() == []  # the thread that made it is gone
        kept = net.open(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    assert kept.fileno() == -1 and net.fd is None
    assert not {a, b} & own_links() and net.holders() == []


def test_a_socket_left_open_fails_the_test():
    leaked: list[socket.socket] = []
    with pytest.raises(AssertionError, match="left open"), private_net() as net:
        leaked.append(net.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)))
    leaked[0].close()


@pytest.mark.slow
def test_a_thread_left_in_it_fails_the_test():
    release = threading.Event()
    stayed: list[threading.Thread] = []

    def start() -> None:
        stayed.append(threading.Thread(target=release.wait))  # born inside: it stays in
        stayed[0].start()

    try:
        with pytest.raises(AssertionError, match="holds the namespace"), private_net() as net:
            net.run(start)
    finally:
        release.set()
        for thread in stayed:
            thread.join()


def test_run_raises_what_the_function_raises():
    net = PrivateNet()
    try:
        with pytest.raises(ZeroDivisionError):
            net.run(lambda: 1 / 0)
        assert net.fd is not None  # made all the same
    finally:
        net.close()
