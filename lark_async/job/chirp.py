"""Publish the job's Network* attributes to its job ad through the starter's chirp server.

When the job has an IO proxy, the starter listens on a loopback address and
leaves ``.chirp.config`` (``host port cookie``) in the scratch directory
(HTCondor ``src/condor_starter.V6.1/io_proxy.cpp``, ``IOProxy::init``: it binds
IPv4 loopback, or IPv6 loopback when ``ENABLE_IPV4`` is false, and writes
``"%s %d %s\\n"`` with a 31-letter cookie; ``jic_shadow.cpp``, ``initIOProxy``,
names the file in the job's working directory). Lark then pushes its
attributes with ``set_job_attr_delayed`` on each poll; the starter forwards
them with its next update to the shadow. Without it, the update ad file is
the only channel.

The file lives where the job writes, so it is hostile data, and the agent is
root in the node's namespace: it is read once, before the job starts, with
the job user's permissions (O_NOFOLLOW, checked on the opened descriptor,
bounded, strictly parsed), and the agent only ever talks to the starter's own
server: a loopback address and a port whose every listening socket belongs
to a root process named ``condor_starter``. Anything else is logged once and
chirp is not used. A push is a small trio client (the protocol is line based)
with a time limit, cancelled like every other task, so a server that hangs up
or never answers costs a log line, never a stuck or spinning agent.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from .. import userfiles
from ..decide import ads

log = logging.getLogger("lark.chirp")
PUSHED_PREFIXES = ("Network", "AverageBandwidthUsage")

CONFIG_MAX_BYTES = 1024  # the starter writes ~60
PUSH_TIMEOUT_S = 2.0  # one push while the job runs (a loopback round trip per attribute)
FINAL_PUSH_TIMEOUT_S = 1.0  # the last push, inside the bounded teardown
LINE_MAX = 5120  # htchirp's CHIRP_LINE_MAX: longest request or reply line
STARTER_COMM = "condor_starter"
_TCP_LISTEN = "0A"  # include/net/tcp_states.h: TCP_LISTEN = 10

_CONFIG_RE = re.compile(rb"([0-9A-Fa-f.:\[\]]{1,64}) ([0-9]{1,5}) ([\x21-\x7e]{1,256})\n?")
_ATTR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ChirpUnusable(Exception):
    """Why chirp is not used for this job (one line, logged once)."""


class _PushFailed(Exception):
    """One push did not go through (logged once per streak of failures)."""


@dataclass(frozen=True)
class ChirpContact:
    host: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    cookie: str


def chirp_config(env: Mapping[str, str]) -> Path | None:
    """Where the starter's chirp config would be for this job (it may not exist)."""
    if env.get("_CONDOR_CHIRP_CONFIG"):
        return Path(env["_CONDOR_CHIRP_CONFIG"])
    scratch = env.get("_CONDOR_SCRATCH_DIR")
    return Path(scratch) / ".chirp.config" if scratch else None


def parse_config(data: bytes) -> ChirpContact:
    """``host port cookie`` on one line, exactly as the starter writes it; nothing else."""
    match = _CONFIG_RE.fullmatch(data)
    if match is None:
        raise ChirpUnusable("not one line of 'host port cookie'")
    host_text, port_text, cookie = (g.decode("ascii") for g in match.groups())
    try:
        host = ipaddress.ip_address(host_text.strip("[]"))
    except ValueError:
        raise ChirpUnusable(f"host {host_text!r} is not an IP address") from None
    if not host.is_loopback:
        raise ChirpUnusable(f"host {host} is not a loopback address (the starter's is)")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ChirpUnusable(f"port {port} is out of range")
    return ChirpContact(host, port, cookie)


def read_config(path: Path, uid: int, gid: int) -> ChirpContact:
    """Read as the job user: a small regular file, no symlink, FIFO or device
    (userfiles.read_regular)."""
    try:
        with userfiles.as_user(uid, gid):
            data = userfiles.read_regular(path, CONFIG_MAX_BYTES, f"{CONFIG_MAX_BYTES} bytes")
    except userfiles.Refused as exc:
        raise ChirpUnusable(str(exc)) from None
    return parse_config(data)


# -- is it the starter's? ------------------------------------------------------


def parse_proc_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``/proc/net/tcp{,6}``'s hex address: 32-bit words, each in host (little-endian) order."""
    raw = bytes.fromhex(text)
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(ordered)


def listeners(
    table: str, host: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> set[int]:
    """Socket inodes of the listening sockets in a ``/proc/net/tcp{,6}`` text that would
    accept a connection to host:port (bound to it, or to the wildcard address)."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _TCP_LISTEN:
            continue
        address, _, port_hex = fields[1].partition(":")
        if int(port_hex, 16) != port:
            continue
        local = parse_proc_address(address)
        if isinstance(local, ipaddress.IPv6Address) and local.ipv4_mapped is not None:
            local = local.ipv4_mapped
        if local == host or local.is_unspecified:
            found.add(int(fields[9]))
    return found


@dataclass(frozen=True)
class StarterListener:
    owners: frozenset[tuple[int, int]]  # (socket inode, pid of the root condor_starter)


def find_starter(contact: ChirpContact) -> StarterListener:
    """The root ``condor_starter`` processes that own every socket listening on the contact's
    address and port in this thread's network namespace (/proc/net/tcp{,6}: inode ->
    /proc/PID/fd -> /proc/PID/comm and the real uid in /proc/PID/status; HTCondor daemons
    switch their effective uid, the real one stays root). One socket of anyone else there
    (SO_REUSEPORT shares a port) and chirp is not used."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):  # (an IPv6 wildcard socket also takes IPv4 connections)
        try:
            text = Path(f"/proc/thread-self/net/{table}").read_text()
        except FileNotFoundError:  # a kernel without IPv6
            continue
        inodes |= listeners(text, contact.host, contact.port)
    where = f"{contact.host}:{contact.port}"
    if not inodes:
        raise ChirpUnusable(f"nothing listens on {where} on this node")
    owners: dict[int, int] = {}
    for pid in _starter_pids():
        for inode in _socket_inodes(pid) & inodes:
            owners[inode] = pid
    if set(owners) != inodes:
        raise ChirpUnusable(
            f"{where} is not the starter's chirp server (its listener belongs to no root "
            f"process named {STARTER_COMM})"
        )
    return StarterListener(frozenset(owners.items()))


def still_listening(listener: StarterListener) -> bool:
    """The same starter still holds the same listening socket (a cheap check per push: a
    socket listening on a port keeps that port)."""
    return all(
        _is_root_starter(pid) and inode in _socket_inodes(pid) for inode, pid in listener.owners
    )


def _starter_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _is_root_starter(int(entry.name)):
            yield int(entry.name)


def _is_root_starter(pid: int) -> bool:
    try:
        if Path(f"/proc/{pid}/comm").read_text().rstrip("\n") != STARTER_COMM:
            return False
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return line.split()[1] == "0"  # real uid
    except OSError:  # gone, or not ours to read
        pass
    return False


def _socket_inodes(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            found.add(int(target[8:-1]))
    return found


# -- the protocol ----------------------------------------------------------------


def quote(text: str) -> str:
    """Chirp's escaping of a word (htchirp's ``quote``): backslash, space, tab, CR, LF."""
    return re.sub(r"([\\ \n\t\r])", r"\\\1", text)


def render_commands(values: Mapping[str, object]) -> list[bytes]:
    """One ``set_job_attr_delayed NAME EXPR`` line per pushed attribute."""
    lines = []
    for name, value in values.items():
        if not name.startswith(PUSHED_PREFIXES) or not _ATTR_RE.fullmatch(name):
            continue
        literal = ads.format_old({name: value}).split(" = ", 1)[1].strip()
        line = f"set_job_attr_delayed {quote(name)} {quote(literal)}\n".encode()
        if len(line) <= LINE_MAX:
            lines.append(line)
    return lines


class _Lines:
    """Reply lines from a stream: a closed connection or an overlong line is an error."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str:
        while b"\n" not in self.buffer:
            if len(self.buffer) > LINE_MAX:
                raise _PushFailed("the chirp server sent an overlong line")
            chunk = await self.stream.receive_some(LINE_MAX)
            if not chunk:
                raise _PushFailed("the chirp server closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("ascii", "replace").strip()


async def _send(contact: ChirpContact, commands: list[bytes]) -> None:
    family = socket.AF_INET6 if contact.host.version == 6 else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((str(contact.host), contact.port))
    except OSError as exc:
        sock.close()
        raise _PushFailed(f"cannot connect: {exc.strerror}") from None
    async with trio.SocketStream(sock) as stream:
        replies = _Lines(stream)
        try:
            await stream.send_all(f"cookie {contact.cookie}\n".encode())
            if await replies.next() != "0":
                raise _PushFailed("the chirp server refused the cookie")
            for command in commands:
                await stream.send_all(command)
                reply = await replies.next()
                if not reply.lstrip("-").isdigit() or int(reply) < 0:
                    verb_name = command.split(b" ", 2)[1].decode()
                    raise _PushFailed(f"the chirp server answered {reply[:20]!r} to {verb_name}")
        except trio.BrokenResourceError as exc:
            why = exc.__cause__ or exc
            raise _PushFailed(f"the chirp server closed the connection ({why})") from None


class ChirpPublisher:
    """The job's chirp channel: decided once, before the job starts."""

    def __init__(self, contact: ChirpContact, listener: StarterListener, where: Path) -> None:
        self.contact = contact
        self.listener = listener
        self.where = where
        self.failed = False  # log a failure once, not on every poll
        self.healthy = True  # the last push went through (else the final one is skipped)
        self.disabled = False

    @classmethod
    def for_job(cls, env: Mapping[str, str], uid: int, gid: int) -> ChirpPublisher | None:
        """The publisher, or None (without an IO proxy; or with a config that does not lead to
        the starter's own chirp server, which is logged once)."""
        path = chirp_config(env)
        if path is None:
            return None
        try:
            contact = read_config(path, uid, gid)
            listener = find_starter(contact)
        except FileNotFoundError:
            return None
        except ChirpUnusable as exc:
            log.warning("chirp not used: %s: %s", path, exc)
            return None
        log.info("chirp: the starter's server at %s:%d", contact.host, contact.port)
        return cls(contact, listener, path)

    async def push(self, values: Mapping[str, object], timeout_s: float = PUSH_TIMEOUT_S) -> None:
        """Push within ``timeout_s``; failures are logged (once per streak), never raised."""
        commands = render_commands(values)
        if self.disabled or not commands:
            return
        if not still_listening(self.listener):
            self.disabled = True
            log.warning(
                "chirp: the starter's server at %s:%d is gone: no more pushes",
                self.contact.host,
                self.contact.port,
            )
            return
        self.healthy = False  # until it went through: a cancelled push counts as failed
        try:
            with trio.fail_after(timeout_s):
                await _send(self.contact, commands)
        except (_PushFailed, trio.TooSlowError) as exc:
            why = str(exc) if isinstance(exc, _PushFailed) else f"no answer within {timeout_s:g} s"
            if not self.failed:
                log.warning("cannot push attributes through chirp (%s): %s", self.where, why)
            self.failed = True
            return
        self.failed = False
        self.healthy = True
