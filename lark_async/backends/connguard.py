"""The job's connection guard: its new connections go through the agent, one at a time.

Inside the job's own namespace (queues are per namespace, so every job uses
queue 0 and nothing on the host changes), the first packet of each new
outbound connection or UDP flow goes to an NFQUEUE that this agent reads on
trio. Established traffic never leaves the kernel, and nothing is
connection-tracked in the job's namespace (tracking every packet of a bulk
transfer there cost 3-5% of its throughput): a TCP connection's first packet
is its SYN, and a UDP flow (source port, destination, port) the agent allowed
is remembered in an nft set, refreshed by its packets, for two minutes after
its last one, as is a flow someone else started (so the job's answers are
not new flows). ICMP and ICMPv6 echo requests and other protocols (SCTP, ...)
are queued packet by packet; ICMP and ICMPv6 errors and replies, neighbour
discovery, MLD and IGMP, which only the kernel sends for an unprivileged job,
are not. A refused first packet comes back marked and is rejected there (TCP
reset, ICMP or ICMPv6 "administratively prohibited"), so a denied connect fails
at once instead of timing out. Both families, one policy: IPv6 is queued and
decided as IPv4 is (``decide/firstpacket.py`` reads the packets, strictly).

Fail closed: without ``--queue-bypass`` the kernel drops what a queue with no
reader would get, so if the agent dies the job's new connections fail. The
rules go with the namespace. DHCP and DHCPv6 client traffic (the agent's own;
ports 68 and 546 are privileged) and loopback are not queued.

nft's ``queue`` statement is used when the kernel has it; otherwise (as on
kernels without nft_queue) the ``NFQUEUE`` target of the configured iptables
build and of its ip6tables twin, which works whichever firewall backend the
host side uses; and without ip6tables, the job's IPv6 is refused but for
loopback. The log says which.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio

from ..decide.audit import AuditKey, AuditTrail
from ..decide.connpolicy import PROTOCOL_NAMES, Address, ConnectionPolicy, Decision
from ..decide.firstpacket import COPY_BYTES, Unreadable, parse_flow
from ..errors import KernelError, ResourceError, map_errors

log = logging.getLogger("lark.guard")

QUEUE = 0
MARK_REFUSED = 0x4C41524B  # "LARK": set on a refused first packet, which comes back to be rejected
BATCH = 64  # first packets decided per wake-up before the other tasks get their turn

MARK_KNOWN = 0x4C41524C  # set on a packet of a UDP flow the agent allowed before
UDP_FLOW_S = 120  # a UDP flow is forgotten this long after its last packet

# Always through nft, which has all of this without conntrack: a UDP flow the agent
# allowed is remembered (by the packets that got through: a refused one never reaches
# the later hook) and its packets marked, so that only a flow's first packet is queued;
# so is a flow someone else started, so the job's answers are not decided as new flows.
# One set per family (a set's key has one address type).
_FAMILIES = (("udp_flows", "ipv4", "ip"), ("udp_flows6", "ipv6", "ip6"))
_SETS = "".join(
    f"""    set {name} {{
        type inet_service . {family}_addr . inet_service
        flags dynamic,timeout
        timeout {UDP_FLOW_S}s
        size 65536
    }}
"""
    for name, family, _ in _FAMILIES
)


def _each_family(rule: str) -> str:
    """``rule`` for both families: ``SET``, ``FAMILY`` and ``IP`` filled in."""
    return "".join(
        "        meta nfproto "
        + rule.replace("SET", name).replace("FAMILY", family).replace("IP", ip)
        + "\n"
        for name, family, ip in _FAMILIES
    )


KNOWN = f"FAMILY udp sport . IP daddr . udp dport @SET meta mark set {MARK_KNOWN:#x}"
# A packet that names a hop to pass on the way (an IPv6 routing header, an IPv4 source
# route: a job may set either without privileges) is never known: it goes to the queue,
# where it is refused, whichever flow it claims to belong to. Each chain's first rule lets
# everything but UDP leave at once (a bulk TCP transfer pays one rule per chain).
FLOWS = f"""table inet lark_guard {{
{_SETS}    chain known {{
        type filter hook output priority -10;
        meta l4proto != udp return
        meta nfproto ipv6 exthdr rt exists return
        meta nfproto ipv4 ip option lsrr exists return
        meta nfproto ipv4 ip option ssrr exists return
{_each_family(KNOWN)}    }}
    chain allowed {{
        type filter hook output priority 10;
        meta l4proto != udp return
{_each_family("FAMILY update @SET { udp sport . IP daddr . udp dport }")}\
    }}
    chain answered {{
        type filter hook input priority 10;
        meta l4proto != udp return
{_each_family("FAMILY update @SET { udp dport . IP saddr . udp sport }")}\
    }}
}}
"""
# The decision: the same rules through nft's queue statement or the iptables and ip6tables
# NFQUEUE target. An established TCP flow's packets (not a bare SYN) leave at the first
# rule. Not queued: loopback, the agent's own DHCP and DHCPv6 client traffic (ports 68 and
# 546 are privileged), ICMP and ICMPv6 but echo requests (neighbour discovery, MLD and the
# errors among them), IGMP; everything else is, first packets only.
NFT_QUEUE = f"""table inet lark_guard {{
    chain decide {{
        type filter hook output priority 0;
        tcp flags & (syn | ack) != syn accept
        oif "lo" accept
        udp sport 68 udp dport 67 accept
        udp sport 546 udp dport 547 accept
        meta mark {MARK_REFUSED:#x} meta l4proto tcp reject with tcp reset
        meta mark {MARK_REFUSED:#x} reject with icmpx type admin-prohibited
        meta l4proto tcp queue num {QUEUE}
        meta mark {MARK_KNOWN:#x} accept
        icmp type != echo-request accept
        icmpv6 type != echo-request accept
        meta l4proto igmp accept
        queue num {QUEUE}
    }}
}}
"""
IPTABLES_QUEUE = f"""*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p tcp ! --syn -j ACCEPT
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -p udp --sport 68 --dport 67 -j ACCEPT
-A OUTPUT -p tcp -m mark --mark {MARK_REFUSED:#x} -j REJECT --reject-with tcp-reset
-A OUTPUT -m mark --mark {MARK_REFUSED:#x} -j REJECT --reject-with icmp-admin-prohibited
-A OUTPUT -p tcp -j NFQUEUE --queue-num {QUEUE}
-A OUTPUT -m mark --mark {MARK_KNOWN:#x} -j ACCEPT
-A OUTPUT -p icmp ! --icmp-type echo-request -j ACCEPT
-A OUTPUT -p igmp -j ACCEPT
-A OUTPUT -j NFQUEUE --queue-num {QUEUE}
COMMIT
"""
IP6TABLES_QUEUE = f"""*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p tcp ! --syn -j ACCEPT
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -p udp --sport 546 --dport 547 -j ACCEPT
-A OUTPUT -p tcp -m mark --mark {MARK_REFUSED:#x} -j REJECT --reject-with tcp-reset
-A OUTPUT -m mark --mark {MARK_REFUSED:#x} -j REJECT --reject-with icmp6-adm-prohibited
-A OUTPUT -p tcp -j NFQUEUE --queue-num {QUEUE}
-A OUTPUT -m mark --mark {MARK_KNOWN:#x} -j ACCEPT
-A OUTPUT -p ipv6-icmp ! --icmpv6-type echo-request -j ACCEPT
-A OUTPUT -j NFQUEUE --queue-num {QUEUE}
COMMIT
"""
# Where neither nft's queue nor ip6tables' NFQUEUE can be had, the job's IPv6 is refused
# but for loopback (IPv6 never gets round the policy): connections at once, by a reset
# or "administratively prohibited"; neighbour discovery and the like pass, harmless.
NFT_IPV6_REFUSED = f"""table inet lark_guard {{
    chain refuse6 {{
        type filter hook output priority 0;
        meta nfproto != ipv6 accept
        oif "lo" accept
        tcp flags & (syn | ack) != syn accept
        udp sport 546 udp dport 547 accept
        meta l4proto tcp reject with tcp reset
        meta mark {MARK_KNOWN:#x} accept
        icmpv6 type != echo-request accept
        reject with icmpx type admin-prohibited
    }}
}}
"""


def ip6tables_for(iptables_command: str) -> str:
    """The IPv6 twin of an iptables build: ``iptables-legacy`` -> ``ip6tables-legacy``."""
    return "ip6" + iptables_command.removeprefix("ip")


def _restore(command: str, rules: str) -> str | None:
    """``COMMAND-restore`` of ``rules`` in the calling thread's namespace (forked from this
    thread, the child runs in the job's); None when done, else why not, in one line."""
    argv = [f"{command}-restore", "--wait"]
    try:
        done = subprocess.run(argv, input=rules, capture_output=True, text=True)
    except FileNotFoundError:
        return f"{argv[0]} is not installed"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["no message"])[-1]
    return None


def install_rules(iptables_command: str, ip6tables_command: str | None = None) -> str:
    """In the calling thread's namespace (the job's): the queue rules for both families, the
    best way this kernel has; returns which. nft's queue statement; else the NFQUEUE target
    of ``iptables_command`` and of its IPv6 twin; else (no ip6tables) that of
    ``iptables_command``, with the job's IPv6 refused but for loopback."""
    from .firewall import nft

    nft.run_here(FLOWS, "connection policy: nft flow rules")
    try:
        nft.run_here(NFT_QUEUE, "connection policy: nft queue rules")
        return "nft queue"
    except KernelError as exc:
        log.debug("nft queue not available (%s): trying %s NFQUEUE", exc, iptables_command)
    failed = _restore(iptables_command, IPTABLES_QUEUE)
    if failed is not None:
        raise KernelError(
            f"the connection policy needs nft's queue statement, which this kernel lacks, "
            f"or {iptables_command}'s NFQUEUE target: {iptables_command}-restore: {failed}"
        )
    if not Path("/proc/sys/net/ipv6").is_dir():  # (booted with ipv6.disable=1)
        return f"{iptables_command} NFQUEUE; no IPv6 in this kernel"
    ip6tables_command = ip6tables_command or ip6tables_for(iptables_command)
    failed = _restore(ip6tables_command, IP6TABLES_QUEUE)
    if failed is None:
        return f"{iptables_command} and {ip6tables_command} NFQUEUE"
    nft.run_here(NFT_IPV6_REFUSED, "connection policy: nft rules refusing IPv6")
    log.warning(
        "connection policy: no way to queue IPv6 (%s-restore: %s): the job's IPv6 is refused "
        "but for loopback",
        ip6tables_command,
        failed,
    )
    return f"{iptables_command} NFQUEUE, IPv6 refused"


def _describe(name: str | int | None, destination: Address | None, port: int | None) -> str:
    """``NetworkLastDeniedDestination``: ``10.0.0.1:443/tcp``, ``[::1]:53/udp``, ``unreadable``
    (a packet the guard could not read, without the addresses to say where it went)."""
    if destination is None:
        return "unreadable"
    host = f"[{destination}]" if destination.version == 6 else str(destination)
    if name is None:
        return host
    return f"{host}:{port}/{name}" if port else f"{host}/{name}"


@dataclass
class Counts:
    allowed: int = 0
    denied: int = 0
    last_denied: str | None = None


@dataclass
class ConnectionGuard:
    """One job's queue: decisions, their audit trail, their counts."""

    policy: ConnectionPolicy
    job: str
    audit: TextIO | None
    trail: AuditTrail
    counts: Counts = field(default_factory=Counts)
    how: str = ""
    _queue: Any = None
    _fd: int = -1
    _socket: socket.socket | None = None  # the queue's netlink socket, read non-blocking
    _overflowed = False

    @classmethod
    def open(
        cls,
        policy: ConnectionPolicy,
        job: str,
        audit_path: Path | None,
        iptables_command: str,
        audit_max_bytes: int,
    ) -> ConnectionGuard:
        """Called on a thread inside the job's namespace, before the job starts."""
        try:
            from netfilterqueue import COPY_PACKET, NetfilterQueue
        except ImportError as exc:
            raise KernelError(
                f"the connection policy needs the NetfilterQueue package ({exc}): "
                "reinstall Lark with contrib/lark-setup"
            ) from None

        audit = None
        if audit_path is not None:
            with map_errors(f"open audit log {audit_path}", ResourceError):
                audit_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
                fd = os.open(
                    audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
                )
                audit = os.fdopen(fd, "a", buffering=1)  # a line is on disk when decided
        guard = cls(policy, job, audit, AuditTrail(job, audit_max_bytes))
        try:
            queue = NetfilterQueue()
            with (
                warnings.catch_warnings()
            ):  # (about the receive buffer size: not for the job's log)
                warnings.simplefilter("ignore")
                try:
                    queue.bind(
                        QUEUE, guard._decide, max_len=4096, mode=COPY_PACKET, range=COPY_BYTES
                    )
                except OSError as exc:
                    raise KernelError(
                        f"connection policy: cannot bind NFQUEUE {QUEUE}: {exc}"
                    ) from exc
            guard._queue, guard._fd = queue, queue.get_fd()
            guard._socket = socket.socket(fileno=os.dup(guard._fd))
            guard.how = install_rules(iptables_command)
        except BaseException:
            guard.close()
            raise
        return guard

    def _decide(self, packet: Any) -> None:
        """libnetfilter_queue's callback, on the trio thread: one verdict per first packet.
        Whatever goes wrong, the packet gets a verdict (refuse), or it would sit in the
        queue and the connection would hang."""
        try:
            self._verdict(packet)
        except Exception:
            log.exception("%s: connection queue: refusing a packet after an error", self.job)
            with contextlib.suppress(Exception):
                packet.set_mark(MARK_REFUSED)
                packet.repeat()

    def _verdict(self, packet: Any) -> None:
        flow = parse_flow(packet.get_payload())

        def deliver(allow: bool) -> None:
            if allow:
                packet.accept()
            else:
                packet.set_mark(MARK_REFUSED)
                packet.repeat()  # back through the hook, to the reject rules

        if isinstance(flow, Unreadable):
            refused = f"unreadable: {flow.why}"
            self._judge(None, flow.source, flow.destination, None, deliver, refused=refused)
        else:
            self._judge(flow.proto, flow.source, flow.destination, flow.port, deliver)

    def decide_relayed(self, proto: int, source: Address, destination: Address, port: int) -> bool:
        """A flow the loopback relay (job/relay.py) would carry to the node: the job's
        ``source`` and the loopback ``destination`` it used, decided, counted and audited as
        any first packet is, in either family."""
        return self._judge(proto, source, destination, port).allow

    def _judge(
        self,
        proto: int | None,
        source: Address | None,
        destination: Address | None,
        port: int | None,
        deliver: Callable[[bool], None] | None = None,
        refused: str | None = None,
    ) -> Decision:
        """Every decision's one path (the queue's and the relay's): the policy's verdict,
        ``deliver``-ed before anything else can fail, then counted and audited."""
        if refused is not None or proto is None or destination is None:
            decision = Decision(False, refused or "no destination")
        else:
            decision = self.policy.decide(proto, destination, port)
        if deliver is not None:
            deliver(decision.allow)
        name = PROTOCOL_NAMES.get(proto, proto) if proto is not None else None
        if decision.allow:
            self.counts.allowed += 1
        else:
            self.counts.denied += 1
            self.counts.last_denied = _describe(name, destination, port)
        if self.audit is not None:
            key = AuditKey(
                name,
                str(source) if source is not None else None,
                str(destination) if destination is not None else None,
                port,
                "allow" if decision.allow else "deny",
                decision.rule,
            )
            self._write(self.trail.decided(key, trio.current_time(), time.time()))
        return decision

    def _write(self, lines: list[str]) -> None:
        if lines and self.audit is not None:
            self.audit.write("".join(lines))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer the queue until cancelled: the fd is watched by trio, and at most ``BATCH``
        first packets are decided per wake-up. A job that makes connections in a loop keeps
        the queue from ever being empty; reading until it is would starve the signals, the
        polls and the teardown."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_audit)
            task_status.started()
            while True:
                await trio.lowlevel.wait_readable(self._fd)
                self.decide_some(BATCH)

    async def _expire_audit(self) -> None:
        """The count lines of windows that end while no decision comes (the next decision
        would write them too)."""
        while True:
            now = trio.current_time()
            await trio.sleep_until(min(self.trail.next_deadline(), now + self.trail.window_s))
            self._write(self.trail.expire(trio.current_time()))

    def decide_some(self, budget: int) -> None:
        """Decide the queued first packets, at most ``budget`` of them (libnetfilter_queue's
        ``run_socket`` reads until its socket says EAGAIN: here the budget says it first)."""
        assert self._socket is not None
        reader = _Budgeted(self._socket, budget)
        try:
            self._queue.run_socket(reader)
        except OSError as exc:
            log.warning("%s: connection queue: %s", self.job, exc)
        if reader.overflowed and not self._overflowed:
            self._overflowed = True
            log.warning(
                "%s: connection queue overflowed: the kernel dropped first packets the agent "
                "could not decide in time (their connections retry or fail)",
                self.job,
            )

    def flush_audit(self) -> None:
        """Write the pending count lines (the job is over: their counts get published)."""
        self._write(self.trail.close())

    def attributes(self) -> dict[str, object]:
        values: dict[str, object] = {
            "NetworkConnectionsAllowed": self.counts.allowed,
            "NetworkConnectionsDenied": self.counts.denied,
        }
        if self.counts.last_denied is not None:
            values["NetworkLastDeniedDestination"] = self.counts.last_denied
        if self.audit is not None:
            values["NetworkAuditRecordsCoalesced"] = self.trail.coalesced
            values["NetworkAuditRecordsDropped"] = self.trail.dropped
        return values

    def close(self) -> None:
        if self._queue is not None:
            if self._fd >= 0:
                trio_token = None
                with contextlib.suppress(RuntimeError):
                    trio_token = trio.lowlevel.current_trio_token()
                if trio_token is not None:
                    trio.lowlevel.notify_closing(self._fd)
            self._queue.unbind()
            self._queue = None
            self._fd = -1
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.audit is not None:
            self.flush_audit()
            self.audit.close()
            self.audit = None


class _Budgeted:
    """The queue's socket as ``run_socket`` reads it: non-blocking, and "empty" (EAGAIN)
    once ``budget`` messages were read."""

    def __init__(self, sock: socket.socket, budget: int) -> None:
        self.sock = sock
        self.left = budget
        self.overflowed = False

    def recv(self, size: int) -> bytes:
        if self.left <= 0:
            raise BlockingIOError(errno.EAGAIN, "this wake-up's budget is spent")
        self.left -= 1
        try:
            return self.sock.recv(size, socket.MSG_DONTWAIT)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:  # (run_socket reads on)
                self.overflowed = True
            raise
