"""The loopback relay: node loopback services on the same address and port inside the job's
namespace.

In a job's namespace 127.0.0.1 is the job's own loopback, so what the job needs from the
node's (the starter's chirp server, which ``.chirp.config`` names as 127.0.0.1:PORT; a
resolver on 127.0.0.53:53; the admin's ``LARK_JOB_LOOPBACK_SERVICES``) is out of its reach.
The agent listens on each service's address and port inside the job's namespace and carries
every TCP connection and UDP flow to the same address and port in its own namespace, the
node's. The files that name the services stay valid as they are, and the node's loopback
never opens to the job (no ``route_localnet``, no firewall rule). The node's service sees
the agent (root, from 127.0.0.1 or ::1) as its client.

Use (the supervisor; before the job starts, with the job namespace's ``lo`` up, as
``setup_job_netns`` leaves it in every mode)::

    relay = await trio.to_thread.run_sync(lambda: Relay.open(
        services, listen_in=functools.partial(netns.inside, plan.netns),
        decide=decided_by(guard), job=plan.name))      # decide: only with a policy
    try:
        await nursery.start(relay.serve)                # until cancelled
        ...
        publish(relay.attributes())
    finally:
        relay.close()                                   # always; idempotent

``Relay.open(services, *, listen_in, connect_in=None, decide=None, limits=None,
job="job") -> Relay`` makes the listening sockets, for every service or for none: a socket
belongs to the namespace of the thread that makes it, so ``listen_in(fn)`` must run ``fn``
in the job's namespace (``netns.inside``, or a test's private namespace); a service that
cannot listen there (its address and port taken, ``lo`` down) raises ``KernelError``.
``connect_in`` makes the node-side sockets likewise; by default the loop's own thread does,
in the agent's namespace (a ``connect_in`` is called on the loop's thread, which waits while
it runs). The same (protocol, address, port) listed twice is one listener. ``decide(service,
source_ip, source_port) -> bool`` is asked once per new TCP connection and per new UDP flow
of a ``checked`` service (DNS's, through ``decided_by(guard)``: the job's connection policy,
its counts and audit log, in both families: a ::1 service's flows by its IPv6 entries);
False refuses, as does an exception (logged). Then:

* ``await relay.serve(task_status=...)``: until cancelled (``nursery.start``);
* ``relay.close()``: releases every socket, whatever state ``serve`` is in (which then
  returns), any number of times;
* ``relay.attributes()``: ``NetworkRelayedOutgoing`` (bytes job to node) and
  ``NetworkRelayedIncoming`` (node to job), all services together, and
  ``NetworkRelayRefused`` when anything was refused (see ``ServiceCounts.refused``);
* ``relay.counts[service]``: ``ServiceCounts``; ``relay.buffered`` (bytes read from one side
  and not yet written to the other) never exceeds ``relay.buffer_bound``.

Bounds (``RelayLimits``; defaults per service): 64 open TCP connections, 256 UDP flows,
a 5 s connect, flows idle 30 s end, 64 KiB chunks. So at most 128 KiB of buffer per
connection (8 MiB for a TCP service at its cap, each allocated once data comes) and one
64 KiB datagram buffer per UDP service; the kernel's socket buffers are the only queues.

TCP: accepted, then connected to the node within the connect time; a connection the node
refuses or never answers is reset at once (logged once until one succeeds). Bytes are
copied both ways a chunk at a time (a chunk is written before the next is read, so a job
that stops reading stops the node's sender); an end's half-close is passed on
(``shutdown(SHUT_WR)``); a reset or error on either side, and cancellation, reset both
(``SO_LINGER`` 0), so an end never takes a stream cut short for a finished one. Past the
connection cap a new connection is accepted and reset at once, rather than left in the
backlog where the job's connect would hang (counted, logged once).

UDP: each job-side source (address, port) is a flow with a node-side socket of its own,
connected to the service, so only the service's answers come back, sent from the listening
socket to that source. A flow ends when idle either way for the idle time. Past the flow cap
a new source's datagrams are dropped, each counted as refused (logged once); the cap counts
refused flows too, as a refusal is remembered for its flow's life (``decide`` is asked once
per flow, not per datagram). Datagrams are carried whole (up to 64 KiB): one that would
block, that the node refuses, or that does not fit is dropped and counted, as UDP would.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import trio

from ..backends.connguard import ConnectionGuard
from ..decide.reach import Address, Proto, Service
from ..errors import LarkError, map_errors

log = logging.getLogger("lark.relay")
T = TypeVar("T")

MAX_TCP_CONNECTIONS = 64  # open at once, per service
MAX_UDP_FLOWS = 256  # remembered at once, per service
CONNECT_TIMEOUT_S = 5.0
UDP_IDLE_S = 30.0
CHUNK_BYTES = 64 * 1024  # per direction of a TCP connection: the relay's only buffer
DATAGRAM_BYTES = 65536  # more than any UDP payload (65,527 over IPv6): a longer one shows cut
UDP_BATCH = 64  # datagrams carried per wake-up before the other tasks get their turn
BACKLOG = 128
RESOURCE_PAUSE_S = 0.1  # accept's wait when the process is out of descriptors or memory

# accept() errors about the one connection being accepted, to skip (accept(2), NOTES; the
# list trio's SocketListener skips); and those of a process short of descriptors or memory
_ACCEPT_SKIPPED = {
    getattr(errno, name)
    for name in (
        "ECONNABORTED", "ECONNRESET", "EPERM", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN",
        "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ETIMEDOUT",
    )
}  # fmt: skip
_ACCEPT_SHORT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_LINGER_RESET = struct.pack("ii", 1, 0)


class Runner(Protocol):
    """Runs ``fn`` with the sockets it makes in some network namespace (``netns.inside``
    partially applied, ``netns.in_fresh_thread``, a test's ``PrivateNet.run``)."""

    def __call__(self, fn: Callable[[], T], /) -> T: ...


Decide = Callable[[Service, Address, int], bool]


def decided_by(guard: ConnectionGuard) -> Decide:
    """``decide`` through the job's connection policy: the relayed flow goes into its counts
    and audit log as the job's flow to the loopback address it used."""

    def decide(service: Service, source: Address, _port: int) -> bool:
        proto = socket.IPPROTO_TCP if service.proto is Proto.TCP else socket.IPPROTO_UDP
        return guard.decide_relayed(proto, source, service.address, service.port)

    return decide


@dataclass(frozen=True)
class RelayLimits:
    tcp_connections: int = MAX_TCP_CONNECTIONS
    udp_flows: int = MAX_UDP_FLOWS
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    udp_idle_s: float = UDP_IDLE_S
    chunk_bytes: int = CHUNK_BYTES


@dataclass
class ServiceCounts:
    outgoing: int = 0  # bytes carried from the job to the node
    incoming: int = 0  # bytes carried from the node to the job
    connections: int = 0  # TCP connections made to the node
    flows: int = 0  # UDP flows carried
    refused: int = 0  # TCP connections over the cap or by ``decide``; UDP flows by ``decide``
    # and, as no flow is remembered for them, each datagram of a new source over the cap
    failed: int = 0  # TCP connects the node refused or never answered; UDP sends it refused
    dropped: int = 0  # datagrams not carried: a refused flow's, cut, would block, failed
    open: int = 0  # TCP connections or UDP flows (refused ones included) now


@dataclass(eq=False)
class _Flow:
    source: Any  # the job's socket address, as recvmsg gives it and sendto takes it
    sock: socket.socket | None  # None: a refused flow, remembered
    last: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass(eq=False)
class _Listener:
    service: Service
    sock: socket.socket
    counts: ServiceCounts
    flows: OrderedDict[tuple[str, int], _Flow] = field(default_factory=OrderedDict)  # idlest first
    buffer: bytearray = field(default_factory=bytearray)  # UDP: one datagram, both ways


def _family(service: Service) -> socket.AddressFamily:
    return socket.AF_INET6 if service.address.version == 6 else socket.AF_INET


def _listen(service: Service) -> socket.socket:
    tcp = service.proto is Proto.TCP
    sock = socket.socket(_family(service), socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(service.address), service.port))
        if tcp:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _merged(services: Iterable[Service]) -> list[Service]:
    """One listener per (protocol, address, port): the first entry's name, checked if any is."""
    found: dict[tuple[Proto, Address, int], Service] = {}
    for service in services:
        first = found.setdefault(service.key, service)
        if service.checked and not first.checked:
            found[service.key] = Service(first.proto, first.address, first.port, first.why, True)
    return list(found.values())


async def _readable(sock: socket.socket) -> None:
    """``wait_readable``, for a socket ``close()`` may have closed before the wait began."""
    if sock.fileno() < 0:
        raise trio.ClosedResourceError("the relay is closed")
    await trio.lowlevel.wait_readable(sock)


async def _writable(sock: socket.socket) -> None:
    if sock.fileno() < 0:
        raise trio.ClosedResourceError("the relay is closed")
    await trio.lowlevel.wait_writable(sock)


async def _connect(sock: socket.socket, address: tuple[str, int]) -> None:
    """A non-blocking socket's connect, its outcome awaited."""
    try:
        sock.connect(address)
    except BlockingIOError:  # (in progress)
        await _writable(sock)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error)) from None


def _reset(sock: socket.socket) -> None:
    """Close with a reset (RST), not an orderly end: the peer must not take a stream cut short
    for a whole one."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class _Once:
    """A warning logged once per key until ``reset`` (a streak of the same failure)."""

    def __init__(self) -> None:
        self._said: set[tuple[object, ...]] = set()

    def warn(self, key: tuple[object, ...], message: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(message, *args)

    def reset(self, key: tuple[object, ...]) -> None:
        self._said.discard(key)


class Relay:
    """The job's loopback services, relayed to the node's (see the module's docstring)."""

    def __init__(
        self,
        listeners: list[_Listener],
        connect_in: Runner | None,
        decide: Decide | None,
        limits: RelayLimits,
        job: str,
    ) -> None:
        self._listeners = listeners
        self._connect_in = connect_in
        self._decide = decide
        self.limits = limits
        self.job = job
        self.counts = {listener.service: listener.counts for listener in listeners}
        self.buffered = 0
        self.buffered_peak = 0
        self._open: set[socket.socket] = set()  # TCP sockets of open connections
        self._once = _Once()
        self._closed = False

    @classmethod
    def open(
        cls,
        services: Iterable[Service],
        *,
        listen_in: Runner,
        connect_in: Runner | None = None,
        decide: Decide | None = None,
        limits: RelayLimits | None = None,
        job: str = "job",
    ) -> Relay:
        """Listen on every service inside the job's namespace (``listen_in``), or on none:
        ``KernelError`` names the service that cannot."""
        wanted = _merged(services)

        def make() -> list[socket.socket]:
            made: list[socket.socket] = []
            try:
                for service in wanted:
                    with map_errors(f"relay {service.why} {service} in the job's namespace"):
                        made.append(_listen(service))
            except BaseException:
                for sock in made:
                    sock.close()
                raise
            return made

        socks = listen_in(make) if wanted else []
        pairs = zip(wanted, socks, strict=True)
        listeners = [_Listener(service, sock, ServiceCounts()) for service, sock in pairs]
        return cls(listeners, connect_in, decide, limits or RelayLimits(), job)

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(self.counts)

    @property
    def buffer_bound(self) -> int:
        """The most ``buffered`` can be: a chunk per direction of every allowed connection."""
        tcp = sum(1 for listener in self._listeners if listener.service.proto is Proto.TCP)
        return tcp * self.limits.tcp_connections * 2 * self.limits.chunk_bytes

    def attributes(self) -> dict[str, int]:
        counts = list(self.counts.values())
        values = {
            "NetworkRelayedOutgoing": sum(c.outgoing for c in counts),
            "NetworkRelayedIncoming": sum(c.incoming for c in counts),
        }
        refused = sum(c.refused for c in counts)
        if refused:
            values["NetworkRelayRefused"] = refused
        return values

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Carry connections and datagrams until cancelled; a service whose listening socket
        fails stops alone (logged), the others carry on."""
        if self._closed:
            raise trio.ClosedResourceError("the relay is closed")
        async with trio.open_nursery() as nursery:
            for listener in self._listeners:
                serve = self._accept if listener.service.proto is Proto.TCP else self._datagrams
                nursery.start_soon(self._service, serve, listener, nursery)
            task_status.started()

    def close(self) -> None:
        """Every socket released: listening, open connections', flows'."""
        self._closed = True
        socks: list[socket.socket] = []
        for listener in self._listeners:
            socks.append(listener.sock)
            socks += [f.sock for f in listener.flows.values() if f.sock is not None]
            listener.flows.clear()
        connections = list(self._open)
        self._open.clear()
        for sock in socks + connections:
            if sock.fileno() >= 0:
                with contextlib.suppress(RuntimeError):  # (outside trio: nobody waits on it)
                    trio.lowlevel.notify_closing(sock)
        for sock in socks:
            sock.close()
        for sock in connections:
            _reset(sock)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _name(self, service: Service) -> str:
        return f"{self.job}: relay {service.why} {service}"

    async def _service(
        self,
        serve: Callable[[_Listener, trio.Nursery], Awaitable[None]],
        listener: _Listener,
        nursery: trio.Nursery,
    ) -> None:
        try:
            await serve(listener, nursery)
        except (OSError, trio.ClosedResourceError) as exc:
            if not self._closed:
                log.warning("%s stopped: %s", self._name(listener.service), exc)
            listener.sock.close()  # the job's connections get refused, not left hanging

    def _allowed(self, service: Service, source: Any) -> bool:
        if self._decide is None or not service.checked:
            return True
        try:
            return self._decide(service, ipaddress.ip_address(source[0]), int(source[1]))
        except Exception:
            log.exception("%s: refusing a flow after an error in its decision", self._name(service))
            return False

    def _node_socket(self, service: Service, kind: socket.SocketKind) -> socket.socket:
        """A socket in the node's namespace; a UDP one connected to the service. With
        ``connect_in``, the loop waits for it (a thread's start and end, some 0.1 ms): trio's
        worker threads would outlive the call, in the namespace the loop runs in."""

        def make() -> socket.socket:
            sock = socket.socket(_family(service), kind)
            try:
                sock.setblocking(False)
                if kind == socket.SOCK_DGRAM:
                    sock.connect((str(service.address), service.port))
                else:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except BaseException:
                sock.close()
                raise
            return sock

        return make() if self._connect_in is None else self._connect_in(make)

    # TCP

    async def _accept(self, listener: _Listener, nursery: trio.Nursery) -> None:
        service, counts, limits, server = (
            listener.service,
            listener.counts,
            self.limits,
            listener.sock,
        )
        while True:
            try:
                conn, source = server.accept()
            except BlockingIOError:
                await _readable(server)
                continue
            except OSError as exc:
                if exc.errno not in _ACCEPT_SKIPPED | _ACCEPT_SHORT:
                    raise
                if exc.errno in _ACCEPT_SHORT:
                    self._once.warn(
                        (service.key, "accept"), "%s: cannot accept: %s", self._name(service), exc
                    )
                    await trio.sleep(RESOURCE_PAUSE_S)
                await trio.lowlevel.checkpoint()
                continue
            if counts.open >= limits.tcp_connections:
                _reset(conn)
                counts.refused += 1
                self._once.warn(
                    (service.key, "cap"),
                    "%s: %d connections open, the most it carries: refusing more (counted in "
                    "NetworkRelayRefused, logged once)",
                    self._name(service),
                    limits.tcp_connections,
                )
            elif not self._allowed(service, source):
                _reset(conn)
                counts.refused += 1
            else:
                counts.open += 1
                self._open.add(conn)
                nursery.start_soon(self._carry, listener, conn)
            await trio.lowlevel.checkpoint()  # (a flood of connects: the others' turn too)

    async def _carry(self, listener: _Listener, conn: socket.socket) -> None:
        service, counts = listener.service, listener.counts
        address = (str(service.address), service.port)
        node: socket.socket | None = None
        broken = True
        try:
            try:
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                node = self._node_socket(service, socket.SOCK_STREAM)
                self._open.add(node)
                with trio.fail_after(self.limits.connect_timeout_s):
                    await _connect(node, address)
            except (OSError, LarkError, trio.TooSlowError, trio.ClosedResourceError) as exc:
                counts.failed += 1
                why = "timed out" if isinstance(exc, trio.TooSlowError) else exc
                self._once.warn(
                    (service.key, "connect"),
                    "%s: the node's service: %s (the job's connection is reset; logged once "
                    "until a connection succeeds)",
                    self._name(service),
                    why,
                )
                return
            self._once.reset((service.key, "connect"))
            counts.connections += 1
            broken = await self._both_ways(conn, node, counts)
        finally:
            counts.open -= 1
            for sock in (conn, node):
                if sock is not None:
                    self._open.discard(sock)
                    if broken:
                        _reset(sock)
                    else:
                        sock.close()

    async def _both_ways(
        self, job: socket.socket, node: socket.socket, counts: ServiceCounts
    ) -> bool:
        """Copy until both sides have ended; True if either broke (reset, error) instead."""
        broken: list[Exception] = []
        async with trio.open_nursery() as nursery:

            def fail(exc: Exception) -> None:
                broken.append(exc)
                nursery.cancel_scope.cancel()

            nursery.start_soon(self._pipe, job, node, counts, True, fail)
            nursery.start_soon(self._pipe, node, job, counts, False, fail)
        return bool(broken)

    async def _pipe(
        self,
        src: socket.socket,
        dst: socket.socket,
        counts: ServiceCounts,
        outgoing: bool,
        fail: Callable[[Exception], None],
    ) -> None:
        """One direction: a chunk read is written whole before the next is read. Plain
        non-blocking calls, and a wait only when one would block: a hop costs one pass of
        the loop's scheduler, not one per call as trio's socket methods do."""
        try:
            await _readable(src)
            chunk = bytearray(self.limits.chunk_bytes)  # (made once there is something to read)
            view = memoryview(chunk)
            while True:
                try:
                    n = src.recv_into(chunk)
                except BlockingIOError:
                    await _readable(src)
                    continue
                if not n:
                    dst.shutdown(socket.SHUT_WR)  # the half-close, passed on
                    return
                self.buffered += n
                self.buffered_peak = max(self.buffered_peak, self.buffered)
                try:
                    done = 0
                    while done < n:
                        try:
                            sent = dst.send(view[done:n])
                        except BlockingIOError:
                            await _writable(dst)
                            continue
                        done += sent
                        if outgoing:
                            counts.outgoing += sent
                        else:
                            counts.incoming += sent
                finally:
                    self.buffered -= n
                if n < len(chunk):
                    await _readable(src)  # (all there was: wait for more, don't ask)
                else:
                    await trio.lowlevel.checkpoint()  # (more may be there: the others first)
        except (OSError, trio.ClosedResourceError) as exc:  # (a reset, say; or close())
            fail(exc)

    # UDP

    async def _datagrams(self, listener: _Listener, nursery: trio.Nursery) -> None:
        """The job's datagrams, to each flow's node-side socket; the flows' idle ends."""
        service, counts, flows, sock = (
            listener.service,
            listener.counts,
            listener.flows,
            listener.sock,
        )
        buffer = listener.buffer = bytearray(DATAGRAM_BYTES)  # (no wait between in and out)
        view = memoryview(buffer)
        while True:
            deadline = next(iter(flows.values())).last + self.limits.udp_idle_s if flows else None
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await _readable(sock)
            self._expire(listener)
            for _ in range(UDP_BATCH):
                try:
                    n, _, flags, source = sock.recvmsg_into([buffer])
                except BlockingIOError:
                    break
                except OSError as exc:  # (a pending ICMP error, say: about one datagram)
                    log.debug("%s: receive: %s", self._name(service), exc)
                    continue
                if flags & socket.MSG_TRUNC:
                    counts.dropped += 1
                    continue
                now = trio.current_time()
                key = (str(source[0]), int(source[1]))
                flow = flows.get(key)
                if flow is None:
                    flow = self._new_flow(listener, source, nursery)
                    if flow is None:
                        continue
                flow.last = now
                flows.move_to_end(key)
                if flow.sock is None:
                    counts.dropped += 1
                    continue
                try:
                    flow.sock.send(view[:n])
                except BlockingIOError:
                    counts.dropped += 1
                except OSError as exc:  # the node's service is down (an ICMP error came back)
                    counts.dropped += 1
                    counts.failed += 1
                    self._once.warn(
                        (service.key, "send"),
                        "%s: the node's service: %s (datagrams dropped; logged once until one "
                        "gets an answer)",
                        self._name(service),
                        exc,
                    )
                else:
                    counts.outgoing += n

    def _new_flow(self, listener: _Listener, source: Any, nursery: trio.Nursery) -> _Flow | None:
        service, counts, flows = listener.service, listener.counts, listener.flows
        if len(flows) >= self.limits.udp_flows:
            counts.refused += 1
            self._once.warn(
                (service.key, "cap"),
                "%s: %d flows open, the most it carries: dropping new ones (counted in "
                "NetworkRelayRefused, logged once)",
                self._name(service),
                self.limits.udp_flows,
            )
            return None
        key = (str(source[0]), int(source[1]))
        now = trio.current_time()
        if not self._allowed(service, source):
            counts.refused += 1
            flow = flows[key] = _Flow(source, None, now)
            counts.open = len(flows)
            return flow
        try:
            node = self._node_socket(service, socket.SOCK_DGRAM)
        except (OSError, LarkError) as exc:
            counts.failed += 1
            self._once.warn(
                (service.key, "socket"), "%s: node-side socket: %s", self._name(service), exc
            )
            return None
        flow = flows[key] = _Flow(source, node, now)
        counts.flows += 1
        counts.open = len(flows)
        nursery.start_soon(self._replies, listener, flow)
        return flow

    async def _replies(self, listener: _Listener, flow: _Flow) -> None:
        """The service's answers to one flow, from the listening socket to the flow's source,
        until the flow ends."""
        service, counts = listener.service, listener.counts
        node = flow.sock
        assert node is not None
        buffer = listener.buffer
        try:
            with flow.scope:
                while True:
                    await _readable(node)
                    for _ in range(UDP_BATCH):
                        try:
                            n, _, flags, _ = node.recvmsg_into([buffer])
                        except BlockingIOError:
                            break
                        except OSError as exc:  # (ICMP: the service is down)
                            counts.failed += 1
                            self._once.warn(
                                (service.key, "send"),
                                "%s: the node's service: %s (datagrams dropped; logged once "
                                "until one gets an answer)",
                                self._name(service),
                                exc,
                            )
                            continue
                        self._once.reset((service.key, "send"))
                        if flags & socket.MSG_TRUNC:
                            counts.dropped += 1
                            continue
                        flow.last = trio.current_time()
                        key = (str(flow.source[0]), int(flow.source[1]))
                        if key in listener.flows:
                            listener.flows.move_to_end(key)
                        try:
                            listener.sock.sendto(memoryview(buffer)[:n], flow.source)
                        except OSError:  # (would block, or the job's socket is gone)
                            counts.dropped += 1
                        else:
                            counts.incoming += n
        except trio.ClosedResourceError:  # (close() while serving)
            pass
        finally:
            node.close()

    def _expire(self, listener: _Listener) -> None:
        """End the flows idle for ``udp_idle_s``."""
        flows, idle_s = listener.flows, self.limits.udp_idle_s
        now = trio.current_time()
        while flows:
            key, flow = next(iter(flows.items()))
            if flow.last + idle_s > now:
                break
            del flows[key]
            flow.scope.cancel()  # (its task closes its socket)
        listener.counts.open = len(flows)
