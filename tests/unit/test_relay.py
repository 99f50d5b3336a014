"""The loopback relay (job/relay.py) in the kernel: both of its ends in private network
namespaces (helpers/private_net.py: new, unnamed, gone with the test), never this machine's.

``node`` plays the node (the agent's own namespace, where the services listen) and ``job``
the job's. Each test's trio loop runs on a thread inside ``node`` (``PrivateNet.run_trio``),
so the relay's node-side sockets are made there by default, as the agent's are in its own;
the relay listens inside ``job`` (``listen_in=job.run``), and the test's job-side clients are
made there too. One test runs trio in a third, empty namespace with ``connect_in=node.run``.
Needs root (skipped otherwise).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import logging
import os
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio
from helpers.private_net import PrivateNet, private_net

from lark_async.backends import netns
from lark_async.backends.connguard import ConnectionGuard
from lark_async.decide.audit import AuditTrail
from lark_async.decide.connpolicy import admin_policy, parse_rules
from lark_async.decide.reach import Proto, Service
from lark_async.errors import KernelError
from lark_async.job import relay as relay_module
from lark_async.job.relay import CHUNK_BYTES, Relay, RelayLimits, decided_by

IP = ipaddress.ip_address
LOCAL, DNS, V6 = IP("127.0.0.1"), IP("127.0.0.53"), IP("::1")
WAIT_S = 10.0  # what a test waits at most for anything (a loaded machine is slow, not this slow)
QUIET_S = 0.3  # how long nothing must come
QUICK = RelayLimits(connect_timeout_s=0.5, udp_idle_s=1.0)  # (1 s: past a loaded machine's lags)


@pytest.fixture
def nets() -> Iterator[tuple[PrivateNet, PrivateNet]]:
    with private_net() as node, private_net() as job:
        yield node, job


def fds() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


def in_job(job: PrivateNet, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM):
    """A trio socket made inside the job's namespace."""
    return trio.socket.from_stdlib_socket(job.run(lambda: socket.socket(family, kind)))


async def until(check: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(WAIT_S):
        while not check():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"not within {WAIT_S:g} s: {what}")


@contextlib.asynccontextmanager
async def relaying(job: PrivateNet, *services: Service, **kwargs: Any) -> AsyncIterator[Relay]:
    """A relay of ``services`` into ``job``, served until the block ends, then closed."""
    relay = Relay.open(services, listen_in=job.run, **kwargs)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(relay.serve)
            yield relay
            nursery.cancel_scope.cancel()
    finally:
        relay.close()


async def tcp_server(address: ipaddress._BaseAddress = LOCAL, backlog: int = 16):
    """A listening TCP socket in the calling thread's namespace (the node's), and its port."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    server = trio.socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await server.bind((str(address), 0))
    server.listen(backlog)
    return server, server.getsockname()[1]


async def receive_all(sock, limit: int = 1 << 30) -> bytes:
    """To the end of the stream (or ``limit`` bytes), within ``WAIT_S``."""
    got = bytearray()
    with trio.fail_after(WAIT_S):
        while len(got) < limit:
            data = await sock.recv(65536)
            if not data:
                break
            got += data
    return bytes(got)


async def send_all(sock, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await sock.send(view) :]


async def connect(job: PrivateNet, service: Service):
    client = in_job(job, socket.AF_INET6 if service.address.version == 6 else socket.AF_INET)
    await client.connect((str(service.address), service.port))
    return client


async def reset_at_once(client, service: Service, within_s: float = 1.0) -> None:
    """The job's connection is reset (RST, never an orderly end) within ``within_s``: at its
    connect already (the kernel accepted it, the reset came before connect returned), or at
    its first read."""
    with trio.fail_after(within_s), pytest.raises(ConnectionResetError):
        await client.connect((str(service.address), service.port))
        await client.recv(10)
    client.close()


# TCP


async def _echo_reply(server, request_size: int, reply: bytes, seen: list[bytes]) -> None:
    """Accept one connection, read the whole request (to its end), answer ``reply``, close."""
    conn, _ = await server.accept()
    with conn:
        seen.append(await receive_all(conn, request_size + 1))
        await send_all(conn, reply)


def test_tcp_both_ways_with_exact_counts(nets):
    node, job = nets
    request, reply = os.urandom(300_001), os.urandom(1_000_003)

    async def main() -> None:
        server, port = await tcp_server()
        service = Service(Proto.TCP, LOCAL, port, why="chirp")
        seen: list[bytes] = []
        async with trio.open_nursery() as nursery, relaying(job, service) as relay:
            nursery.start_soon(_echo_reply, server, len(request), reply, seen)
            client = await connect(job, service)
            with client:
                await send_all(client, request)
                client.shutdown(socket.SHUT_WR)
                assert await receive_all(client) == reply
            await until(lambda: relay.counts[service].open == 0, "the connection ends")
            assert seen == [request]
            counts = relay.counts[service]
            assert (counts.outgoing, counts.incoming) == (300_001, 1_000_003)
            assert (counts.connections, counts.refused, counts.failed) == (1, 0, 0)
            assert relay.attributes() == {
                "NetworkRelayedOutgoing": 300_001,
                "NetworkRelayedIncoming": 1_000_003,
            }
            assert relay.buffered == 0
        server.close()

    node.run_trio(main)


def test_half_close_is_passed_on_both_ways(nets):
    """Each end's shutdown(SHUT_WR) reaches the other as an end of stream, and the other
    direction carries on after it."""
    node, job = nets

    async def main() -> None:
        server, port = await tcp_server()
        service = Service(Proto.TCP, LOCAL, port)
        async with relaying(job, service) as relay:
            # the job ends first: the node reads to its end, then answers
            client = await connect(job, service)
            conn, _ = await server.accept()
            await send_all(client, b"question")
            client.shutdown(socket.SHUT_WR)
            assert await receive_all(conn) == b"question"
            await send_all(conn, b"answer after your end")
            conn.close()
            assert await receive_all(client) == b"answer after your end"
            client.close()
            # the node ends first: the job reads to its end, and still sends afterwards
            client = await connect(job, service)
            conn, _ = await server.accept()
            await send_all(conn, b"banner")
            conn.shutdown(socket.SHUT_WR)
            assert await receive_all(client) == b"banner"
            await send_all(client, b"late words")
            client.shutdown(socket.SHUT_WR)
            assert await receive_all(conn) == b"late words"
            conn.close()
            assert await client.recv(10) == b""
            client.close()
            await until(lambda: relay.counts[service].open == 0, "both connections end")
            assert relay.counts[service].outgoing == len(b"question" + b"late words")
            assert relay.counts[service].incoming == len(b"answer after your end" + b"banner")
        server.close()

    node.run_trio(main)


def test_a_reset_is_passed_on_as_a_reset(nets):
    node, job = nets

    async def main() -> None:
        server, port = await tcp_server()
        service = Service(Proto.TCP, LOCAL, port)
        async with relaying(job, service):
            client = await connect(job, service)
            conn, _ = await server.accept()
            await send_all(conn, b"partial")
            assert await client.recv(100) == b"partial"
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            conn.close()  # a reset: the job must not take "partial" for the whole answer
            with trio.fail_after(WAIT_S), pytest.raises(ConnectionResetError):
                await client.recv(100)
            client.close()
        server.close()

    node.run_trio(main)


def test_a_service_that_is_down_resets_the_jobs_connection_at_once(nets, caplog):
    node, job = nets
    caplog.set_level(logging.WARNING, logger="lark.relay")
    before = fds()

    async def main() -> None:
        server, port = await tcp_server()
        server.close()  # the port is known, and nothing listens on it
        service = Service(Proto.TCP, LOCAL, port, why="squid")
        async with relaying(job, service) as relay:
            for _ in range(3):  # at once: no connect timeout waited out
                await reset_at_once(in_job(job), service)
            await until(lambda: relay.counts[service].open == 0, "the connections end")
            assert relay.counts[service].failed == 3
            assert relay.counts[service].connections == 0
            assert "NetworkRelayRefused" not in relay.attributes()  # the node's, not ours

    node.run_trio(main)
    assert fds() <= before
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # once per streak of failures
    assert "job: relay squid tcp 127.0.0.1:" in lines[0] and "Connection refused" in lines[0]


@pytest.mark.slow
def test_a_node_service_that_never_answers_is_given_up_after_the_timeout(nets):
    node, job = nets

    async def main() -> None:
        server, port = await tcp_server(backlog=0)
        service = Service(Proto.TCP, LOCAL, port)
        filler = trio.socket.socket()
        await filler.connect(("127.0.0.1", port))  # the backlog is full: SYNs go unanswered
        async with relaying(job, service, limits=QUICK) as relay:
            start = trio.current_time()
            await reset_at_once(in_job(job), service, within_s=WAIT_S)
            assert trio.current_time() - start >= QUICK.connect_timeout_s * 0.9
            await until(lambda: relay.counts[service].failed == 1, "the connect fails")
        filler.close()
        server.close()

    node.run_trio(main)


def test_connections_past_the_cap_are_refused_and_counted(nets, caplog):
    node, job = nets
    caplog.set_level(logging.WARNING, logger="lark.relay")
    limits = RelayLimits(tcp_connections=3)

    async def main() -> int:
        server, port = await tcp_server()
        service = Service(Proto.TCP, LOCAL, port, why="chirp")
        async with relaying(job, service, limits=limits) as relay:
            held = []
            for n in range(3):
                client = await connect(job, service)
                conn, _ = await server.accept()
                await send_all(client, b"%d" % n)
                assert await conn.recv(10) == b"%d" % n
                held.append((client, conn))
            for _ in range(2):
                await reset_at_once(in_job(job), service)  # (the kernel accepts; the relay resets)
            assert relay.counts[service].refused == 2
            assert relay.attributes()["NetworkRelayRefused"] == 2
            client, conn = held.pop()
            client.close()
            conn.close()
            await until(lambda: relay.counts[service].open == 2, "one connection ends")
            client = await connect(job, service)
            conn, _ = await server.accept()
            await send_all(client, b"again")
            assert await conn.recv(10) == b"again"
            for ends in [*held, (client, conn)]:
                for end in ends:
                    end.close()
            assert relay.counts[service].connections == 4
        server.close()
        return port

    port = node.run_trio(main)
    assert [r.getMessage() for r in caplog.records] == [
        f"job: relay chirp tcp 127.0.0.1:{port}: 3 connections open, the most it carries: "
        "refusing more (counted in NetworkRelayRefused, logged once)"
    ]


@pytest.mark.slow
def test_a_job_that_never_reads_holds_the_relay_to_its_bound(nets):
    """The node floods, the job reads nothing: the relay reads at most a chunk ahead of what
    it could write, the kernel's buffers fill, the node's sender stops; then the job reads it
    all, exactly."""
    node, job = nets
    total = 32 * 1024 * 1024

    async def main() -> None:
        server, port = await tcp_server()
        service = Service(Proto.TCP, LOCAL, port)
        async with relaying(job, service) as relay, trio.open_nursery() as nursery:
            client = await connect(job, service)
            conn, _ = await server.accept()
            sent: list[int] = [0]

            async def flood() -> None:
                block = os.urandom(1 << 20)
                for _ in range(total // len(block)):
                    await send_all(conn, block)
                    sent[0] += len(block)
                conn.close()

            nursery.start_soon(flood)
            last, still = -1, 0
            with trio.fail_after(WAIT_S):
                while still < 20:  # 0.2 s without a byte carried: everything is full
                    await trio.sleep(0.01)
                    now = relay.counts[service].incoming
                    still = still + 1 if now == last else 0
                    last = now
            stalled = relay.counts[service].incoming
            assert stalled < total and sent[0] < total
            assert 0 < relay.buffered <= CHUNK_BYTES  # one chunk read, waiting to be written
            assert relay.buffered_peak <= CHUNK_BYTES <= relay.buffer_bound
            assert len(await receive_all(client)) == total
            assert relay.counts[service].incoming == total
            assert relay.buffered_peak <= CHUNK_BYTES
            client.close()
        server.close()

    node.run_trio(main)


def test_cancelled_mid_transfer_every_socket_goes_and_both_ends_are_reset(nets):
    node, job = nets
    before, threads = fds(), threading.active_count()

    async def main() -> None:
        server, port = await tcp_server()
        service = Service(Proto.TCP, LOCAL, port)
        udp = Service(Proto.UDP, LOCAL, port)
        echo = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await echo.bind(("127.0.0.1", port))
        relay = Relay.open([service, udp], listen_in=job.run)
        client = conn = None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(relay.serve)
                client = await connect(job, service)
                conn, _ = await server.accept()
                datagram = in_job(job, kind=socket.SOCK_DGRAM)
                await datagram.sendto(b"a flow", ("127.0.0.1", port))
                assert (await echo.recvfrom(100))[0] == b"a flow"
                nursery.start_soon(send_all, conn, os.urandom(8 << 20))
                assert await client.recv(10)  # mid-transfer
                nursery.cancel_scope.cancel()
            with trio.fail_after(1.0), pytest.raises(ConnectionResetError):
                while await client.recv(1 << 20):  # what the kernel had, then the reset
                    pass
            with trio.fail_after(1.0), pytest.raises(ConnectionResetError):
                await receive_all(conn)
        finally:
            relay.close()
            relay.close()  # (idempotent)
            for sock in (client, conn, datagram, echo, server):
                if sock is not None:
                    sock.close()
        assert relay.buffered == 0

    node.run_trio(main)
    assert fds() <= before, sorted(fds() - before)
    assert threading.active_count() <= threads


def test_close_while_serving_releases_everything_and_serve_returns(nets):
    node, job = nets
    before = fds()

    async def main() -> None:
        server, port = await tcp_server()
        service, udp = Service(Proto.TCP, LOCAL, port), Service(Proto.UDP, LOCAL, port)
        relay = Relay.open([service, udp], listen_in=job.run)
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                await nursery.start(relay.serve)
                client = await connect(job, service)
                conn, _ = await server.accept()
                datagram = in_job(job, kind=socket.SOCK_DGRAM)
                await datagram.sendto(b"x", ("127.0.0.1", port))
                await until(lambda: relay.counts[udp].flows == 1, "a flow")
                relay.close()  # serve ends by itself: nothing cancelled it
        with trio.fail_after(1.0), pytest.raises(ConnectionResetError):
            await client.recv(10)
        for sock in (client, conn, datagram, server):
            sock.close()
        with pytest.raises(trio.ClosedResourceError):
            await relay.serve()

    node.run_trio(main)
    assert fds() <= before, sorted(fds() - before)


# UDP


async def _udp_echo(sock, seen: list[tuple[bytes, Any]]) -> None:
    """Answer each datagram with b"re:" and itself, to its sender; closed when cancelled."""
    with sock:
        while True:
            data, source = await sock.recvfrom(65536)
            seen.append((data, source))
            await sock.sendto(b"re:" + data, source)


async def udp_echo(nursery: trio.Nursery, address=DNS, seen=None):
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    await sock.bind((str(address), 0))
    nursery.start_soon(_udp_echo, sock, seen if seen is not None else [])
    return sock.getsockname()[1]


async def nothing_comes(sock) -> None:
    with trio.move_on_after(QUIET_S):
        data = await sock.recvfrom(65536)
        raise AssertionError(f"came: {data!r}")


def test_udp_requests_and_answers_for_several_sources(nets):
    node, job = nets

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            seen: list[tuple[bytes, Any]] = []
            port = await udp_echo(nursery, seen=seen)
            service = Service(Proto.UDP, DNS, port, why="DNS")
            async with relaying(job, service) as relay:
                clients = [in_job(job, kind=socket.SOCK_DGRAM) for _ in range(3)]
                for round_ in range(2):
                    for n, client in enumerate(clients):
                        await client.sendto(b"q%d.%d" % (n, round_), (str(DNS), port))
                    for n, client in enumerate(clients):
                        with trio.fail_after(WAIT_S):
                            data, source = await client.recvfrom(100)
                        assert (data, source) == (b"re:q%d.%d" % (n, round_), (str(DNS), port))
                counts = relay.counts[service]
                assert (counts.flows, counts.open) == (3, 3)
                assert (counts.outgoing, counts.incoming) == (6 * 4, 6 * 7)
                # one node-side socket per job-side source, the same for each of its datagrams
                sources = {data[:2]: source for data, source in seen}
                assert len(set(sources.values())) == 3
                assert len({source for _, source in seen}) == 3
                for client in clients:
                    client.close()
            nursery.cancel_scope.cancel()

    node.run_trio(main)


@pytest.mark.slow
def test_udp_flows_past_the_cap_are_dropped_until_one_expires(nets):
    node, job = nets
    limits = RelayLimits(udp_flows=2, udp_idle_s=QUICK.udp_idle_s)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await udp_echo(nursery)
            service = Service(Proto.UDP, DNS, port)
            async with relaying(job, service, limits=limits) as relay:
                clients = [in_job(job, kind=socket.SOCK_DGRAM) for _ in range(3)]
                for client in clients[:2]:
                    await client.sendto(b"in", (str(DNS), port))
                    with trio.fail_after(WAIT_S):
                        assert (await client.recvfrom(100))[0] == b"re:in"
                await clients[2].sendto(b"over", (str(DNS), port))
                await clients[2].sendto(b"over", (str(DNS), port))
                await nothing_comes(clients[2])
                assert relay.counts[service].refused == 2  # each of its datagrams
                assert relay.attributes()["NetworkRelayRefused"] == 2
                await until(lambda: relay.counts[service].open == 0, "the two flows expire")
                await clients[2].sendto(b"now", (str(DNS), port))
                with trio.fail_after(WAIT_S):
                    assert (await clients[2].recvfrom(100))[0] == b"re:now"
                assert relay.counts[service].flows == 3
                for client in clients:
                    client.close()
            nursery.cancel_scope.cancel()

    node.run_trio(main)


@pytest.mark.slow
def test_an_idle_udp_flow_expires_and_a_busy_one_does_not(nets):
    node, job = nets
    before = fds()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            seen: list[tuple[bytes, Any]] = []
            port = await udp_echo(nursery, seen=seen)
            service = Service(Proto.UDP, DNS, port)
            async with relaying(job, service, limits=QUICK) as relay:
                busy, idle = (in_job(job, kind=socket.SOCK_DGRAM) for _ in range(2))
                await idle.sendto(b"once", (str(DNS), port))
                with trio.fail_after(WAIT_S):
                    await idle.recvfrom(100)
                last_heard, gone = trio.current_time(), None
                one_flow = len(fds())
                for _ in range(25):  # 2.5 s of a datagram every 0.1 s; the idle time is 1 s
                    await busy.sendto(b"busy", (str(DNS), port))
                    with trio.fail_after(WAIT_S):
                        await busy.recvfrom(100)
                    if gone is None and relay.counts[service].open == 1:
                        gone = trio.current_time() - last_heard
                    await trio.sleep(0.1)
                assert relay.counts[service].open == 1  # the idle one went
                assert gone is not None and 0.9 <= gone <= 1.6, gone  # after its idle time
                assert relay.counts[service].flows == 2
                assert len(fds()) == one_flow  # its node-side socket with it: one flow's left
                await until(lambda: relay.counts[service].open == 0, "the busy one rests")
                await until(lambda: len(fds()) == one_flow - 1, "its socket closes")
                await idle.sendto(b"back", (str(DNS), port))
                with trio.fail_after(WAIT_S):
                    while (await idle.recvfrom(100))[0] != b"re:back":
                        pass
                assert relay.counts[service].flows == 3  # a new flow: a new node-side port
                ports = [source[1] for data, source in seen if data in (b"once", b"back")]
                assert len(set(ports)) == 2
                busy.close()
                idle.close()
            nursery.cancel_scope.cancel()

    node.run_trio(main)
    assert fds() <= before


@pytest.mark.slow
def test_huge_empty_and_hostile_datagrams(nets):
    node, job = nets

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            seen: list[tuple[bytes, Any]] = []
            port = await udp_echo(nursery, seen=seen)
            service = Service(Proto.UDP, DNS, port)
            async with relaying(job, service) as relay:
                client = in_job(job, kind=socket.SOCK_DGRAM)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                biggest = os.urandom(65507 - 3)  # the answer is 3 longer: the IPv4 maximum
                for data in (biggest, b""):
                    await client.sendto(data, (str(DNS), port))
                    with trio.fail_after(WAIT_S):
                        assert (await client.recvfrom(65536))[0] == b"re:" + data
                counts = relay.counts[service]
                assert (counts.outgoing, counts.incoming) == (65504, 65507 + 3)
                assert counts.dropped == 0
                # someone else on the node writes to the flow's node-side port: the socket is
                # connected to the service, so nothing of it reaches the job
                flow_port = seen[0][1]
                stranger = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                await stranger.sendto(b"spoofed", flow_port)
                await nothing_comes(client)
                stranger.close()
                # a job that sends from many ports gets flows up to the cap, and no more
                flooders = [in_job(job, kind=socket.SOCK_DGRAM) for _ in range(300)]
                for flooder in flooders:
                    await flooder.sendto(b"x", (str(DNS), port))
                await until(lambda: counts.flows + counts.refused == 301, "all decided")
                assert (counts.flows, counts.refused) == (256, 45)
                for flooder in flooders:
                    flooder.close()
                client.close()
            nursery.cancel_scope.cancel()

    node.run_trio(main)


def test_a_datagram_longer_than_the_relays_buffer_is_dropped_not_cut(nets, monkeypatch):
    """No UDP payload is longer than the relay's 64 KiB buffer; were one to be, it would be
    dropped (MSG_TRUNC), never carried cut short. Shown with a buffer of 1000 bytes."""
    node, job = nets
    monkeypatch.setattr(relay_module, "DATAGRAM_BYTES", 1000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            seen: list[tuple[bytes, Any]] = []
            port = await udp_echo(nursery, seen=seen)
            service = Service(Proto.UDP, DNS, port)
            async with relaying(job, service) as relay:
                client = in_job(job, kind=socket.SOCK_DGRAM)
                await client.sendto(b"x" * 1001, (str(DNS), port))  # too long to carry
                await client.sendto(b"y" * 998, (str(DNS), port))  # its answer is too long
                await client.sendto(b"z" * 997, (str(DNS), port))  # both fit
                with trio.fail_after(WAIT_S):
                    assert (await client.recvfrom(2000))[0] == b"re:" + b"z" * 997
                assert [data for data, _ in seen] == [b"y" * 998, b"z" * 997]
                counts = relay.counts[service]
                assert (counts.dropped, counts.outgoing, counts.incoming) == (2, 998 + 997, 1000)
                client.close()
            nursery.cancel_scope.cancel()

    node.run_trio(main)


@pytest.mark.slow
def test_a_udp_service_that_is_down_drops_and_is_logged_once(nets, caplog):
    node, job = nets
    caplog.set_level(logging.WARNING, logger="lark.relay")

    async def main() -> None:
        probe = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await probe.bind(("127.0.0.53", 0))
        port = probe.getsockname()[1]
        probe.close()  # nobody there: the kernel answers port unreachable
        service = Service(Proto.UDP, DNS, port, why="DNS")
        async with relaying(job, service) as relay:
            client = in_job(job, kind=socket.SOCK_DGRAM)
            for _ in range(4):
                await client.sendto(b"anyone?", (str(DNS), port))
                await trio.sleep(0.05)
            await nothing_comes(client)
            client.close()
            assert relay.counts[service].failed >= 2
            assert relay.counts[service].incoming == 0

    node.run_trio(main)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "job: relay DNS udp 127.0.0.53:" in lines[0], lines
    assert "Connection refused" in lines[0]


# the policy hook


def test_decide_refuses_a_connection_and_a_flow_asked_once_each(nets):
    node, job = nets
    asked: list[tuple[str, str, int]] = []
    odd, even = 40001, 40002  # the job's clients' ports (the namespace is the test's own)

    def decide(service: Service, source: Any, source_port: int) -> bool:
        asked.append((service.why, str(source), source_port))
        return source_port % 2 == 0  # (the job's ports, chosen below)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server, port = await tcp_server()
            udp_port = await udp_echo(nursery, address=LOCAL)
            checked = Service(Proto.TCP, LOCAL, port, why="DNS", checked=True)
            udp = Service(Proto.UDP, LOCAL, udp_port, why="DNS", checked=True)
            async with relaying(job, checked, udp, decide=decide) as relay:
                await reset_at_once(await bound_client(job, socket.SOCK_STREAM, odd), checked)
                allowed = await bound_client(job, socket.SOCK_STREAM, even)
                await allowed.connect(("127.0.0.1", port))
                conn, _ = await server.accept()
                await send_all(allowed, b"ok")
                assert await conn.recv(10) == b"ok"
                allowed.close()
                conn.close()
                assert relay.counts[checked].refused == 1
                bad = await bound_client(job, socket.SOCK_DGRAM, odd)
                for _ in range(3):
                    await bad.sendto(b"q", ("127.0.0.1", udp_port))
                await nothing_comes(bad)
                good = await bound_client(job, socket.SOCK_DGRAM, even)
                await good.sendto(b"q", ("127.0.0.1", udp_port))
                with trio.fail_after(WAIT_S):
                    assert (await good.recvfrom(10))[0] == b"re:q"
                counts = relay.counts[udp]
                assert (counts.refused, counts.dropped, counts.flows) == (1, 3, 1)
                assert relay.attributes()["NetworkRelayRefused"] == 2
                bad.close()
                good.close()
            server.close()
            nursery.cancel_scope.cancel()
        assert [a[0] for a in asked] == ["DNS"] * 4  # once per connection, once per flow
        assert {a[1] for a in asked} == {"127.0.0.1"}

    node.run_trio(main)


async def bound_client(job: PrivateNet, kind: int, port: int):
    client = in_job(job, kind=kind)
    await client.bind(("127.0.0.1", port))
    return client


def test_an_unchecked_service_never_asks_and_a_failing_decision_refuses(nets):
    node, job = nets

    def broken(service: Service, source: Any, port: int) -> bool:
        raise RuntimeError("policy bug")

    async def main() -> None:
        server, port = await tcp_server()
        plain = Service(Proto.TCP, LOCAL, port)
        async with relaying(job, plain, decide=broken) as relay:
            client = await connect(job, plain)
            conn, _ = await server.accept()
            client.close()
            conn.close()
            assert relay.counts[plain].refused == 0
        checked = Service(Proto.TCP, LOCAL, port, checked=True)
        async with relaying(job, checked, decide=broken) as relay:
            await reset_at_once(in_job(job), checked)
            assert relay.counts[checked].refused == 1
        server.close()

    node.run_trio(main)


def test_the_connection_policy_audits_a_relayed_dns_flow_as_any_udp_flow(nets):
    node, job = nets
    policy = admin_policy(parse_rules("allow udp 127.0.0.53:53, deny any 0.0.0.0/0"), "deny")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await udp_echo(nursery)
            audit = io.StringIO()
            guard = ConnectionGuard(policy, "job.1", audit, AuditTrail("job.1", 1 << 20))
            service = Service(Proto.UDP, DNS, port, why="DNS", checked=True)
            async with relaying(job, service, decide=decided_by(guard)) as relay:
                client = in_job(job, kind=socket.SOCK_DGRAM)
                await client.sendto(b"q", (str(DNS), port))
                await nothing_comes(client)  # the policy allows port 53 only
                client.close()
                assert relay.counts[service].refused == 1
            line = json.loads(audit.getvalue())
            del line["time"]
            assert line == {
                "job": "job.1", "protocol": "udp", "source": "127.0.0.1",
                "destination": "127.0.0.53", "port": port, "verdict": "deny",
                "rule": "deny any 0.0.0.0/0",
            }  # fmt: skip
            assert guard.counts.last_denied == f"127.0.0.53:{port}/udp"
            nursery.cancel_scope.cancel()

    node.run_trio(main)


# families, namespaces, setup


def test_ipv6_loopback_services(nets):
    node, job = nets

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server, port = await tcp_server(V6)
            udp_port = await udp_echo(nursery, address=V6)
            tcp = Service(Proto.TCP, V6, port)
            udp = Service(Proto.UDP, V6, udp_port)
            seen: list[bytes] = []
            nursery.start_soon(_echo_reply, server, 5, b"six", seen)
            async with relaying(job, tcp, udp) as relay:
                client = await connect(job, tcp)
                await send_all(client, b"hello")
                client.shutdown(socket.SHUT_WR)
                assert await receive_all(client) == b"six"
                client.close()
                datagram = in_job(job, socket.AF_INET6, socket.SOCK_DGRAM)
                await datagram.sendto(b"q", ("::1", udp_port))
                with trio.fail_after(WAIT_S):
                    data, source = await datagram.recvfrom(10)
                assert (data, source[:2]) == (b"re:q", ("::1", udp_port))
                datagram.close()
                await until(lambda: relay.counts[tcp].open == 0, "the connection ends")
                assert relay.attributes() == {
                    "NetworkRelayedOutgoing": 5 + 1,
                    "NetworkRelayedIncoming": 3 + 4,
                }
            assert seen == [b"hello"]
            server.close()
            nursery.cancel_scope.cancel()

    node.run_trio(main)


def test_node_side_sockets_are_made_where_connect_in_says(nets):
    """The agent's trio thread in a third, empty namespace: what it would connect to there
    does not exist, so only sockets made through ``connect_in`` (in ``node``) reach the
    services."""
    node, job = nets
    with private_net() as agent:
        made: dict[str, Any] = {}

        def serve_in_node() -> None:
            tcp = socket.create_server(("127.0.0.1", 0))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", tcp.getsockname()[1]))
            made.update(tcp=tcp, udp=udp, port=tcp.getsockname()[1])

        node.run(serve_in_node)  # (a socket stays in its namespace, whoever uses it)
        port = made["port"]

        async def main() -> None:
            server = trio.socket.from_stdlib_socket(made["tcp"])
            echo = trio.socket.from_stdlib_socket(made["udp"])
            services = (Service(Proto.TCP, LOCAL, port), Service(Proto.UDP, LOCAL, port))
            async with relaying(job, *services, connect_in=node.run) as relay:
                client = await connect(job, services[0])
                with trio.fail_after(WAIT_S):
                    conn, _ = await server.accept()
                await send_all(client, b"via node")
                assert await conn.recv(10) == b"via node"
                conn.close()
                client.close()
                datagram = in_job(job, kind=socket.SOCK_DGRAM)
                await datagram.sendto(b"dgram", ("127.0.0.1", port))
                with trio.fail_after(WAIT_S):
                    data, source = await echo.recvfrom(10)
                assert data == b"dgram"
                await echo.sendto(b"back", source)
                with trio.fail_after(WAIT_S):
                    assert (await datagram.recvfrom(10))[0] == b"back"
                datagram.close()
                assert relay.counts[services[0]].connections == 1

        try:
            agent.run_trio(main)
        finally:
            made["tcp"].close()
            made["udp"].close()


def test_open_fails_in_one_line_and_leaves_nothing(nets):
    _, job = nets
    before = fds()
    taken = job.run(lambda: socket.create_server(("127.0.0.1", 0)))
    port = taken.getsockname()[1]
    services = [Service(Proto.UDP, LOCAL, port), Service(Proto.TCP, LOCAL, port, why="chirp")]
    with pytest.raises(KernelError) as caught:
        Relay.open(services, listen_in=job.run)
    assert str(caught.value) == (
        f"relay chirp tcp 127.0.0.1:{port} in the job's namespace: Address already in use"
    )
    taken.close()
    assert fds() <= before  # the UDP one, made first, closed again
    job.ip(batch=["link set lo down", "addr flush dev lo"])  # as a new namespace has it
    with pytest.raises(KernelError) as caught:
        Relay.open(services[:1], listen_in=job.run)
    assert str(caught.value) == (
        f"relay LARK_JOB_LOOPBACK_SERVICES udp 127.0.0.1:{port} in the job's namespace: "
        "Cannot assign requested address"
    )
    assert Relay.open([], listen_in=job.run).attributes() == {
        "NetworkRelayedOutgoing": 0,
        "NetworkRelayedIncoming": 0,
    }


def test_the_same_service_twice_is_one_listener_checked_if_either_is(nets):
    _, job = nets
    port = 5353
    services = [
        Service(Proto.UDP, DNS, port, why="LARK_JOB_LOOPBACK_SERVICES"),
        Service(Proto.UDP, DNS, port, why="DNS", checked=True),
    ]
    with Relay.open(services, listen_in=job.run) as relay:
        assert relay.services == (
            Service(Proto.UDP, DNS, port, why="LARK_JOB_LOOPBACK_SERVICES", checked=True),
        )


def test_the_job_namespace_has_its_loopback_up_in_every_mode():
    """setup_job_netns (nat, bridge, and mode none, which makes no veth) brings ``lo`` up,
    which the relay needs to listen on 127.0.0.1 and ::1 there. A named namespace with a
    prefix of this test's own, removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    name = f"lkrelay{os.urandom(2).hex()}"
    try:
        netns.in_fresh_thread(
            lambda: netns.setup_job_netns(
                name, None, "i_lkrelay", None, lambda _step: None, lambda _step: None
            )
        )

        def look() -> str:
            for address, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.bind((address, 0))
            return subprocess.run(
                ["ip", "-o", "link", "show", "lo"], capture_output=True, text=True, check=True
            ).stdout

        assert ",UP," in netns.inside(name, look)
    finally:
        netns.discard_netns(name)
    assert not netns.netns_exists(name)
