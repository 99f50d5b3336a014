"""Netlink framing, attributes and the one receive loop, for every protocol we speak.

Written by hand, not with pyroute2, because importing pyroute2 costs 150-180 ms
on the job's start-up path. The protocol is small: a 16-byte header per
message, type-length-value attributes padded to 4 bytes, and three ways a
request ends (an ack or error, the end of a dump, or its one reply). The
kernel's answer to a refusal is an errno, and that is all callers ever test:
never the words.

``Socket`` is the only code that reads a netlink socket; it works on anything
with ``send`` and ``recv``, so the tests drive it with a fake.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

# message types every family shares (linux/netlink.h)
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
# request flags
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x2, 0x4, 0x8
# ... of a GET request
NLM_F_ROOT, NLM_F_MATCH = 0x100, 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
# ... of a NEW request
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
# attribute type flags
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
ATTR_HEADER = struct.Struct("=HH")  # nlattr: length, type
_ERRNO = struct.Struct("=i")
RECV_BUFFER = 1 << 16  # above the 32 KiB the kernel puts in one dump datagram


def align(length: int) -> int:
    """Netlink pads messages and attributes to 4 bytes."""
    return (length + 3) & ~3


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` says why, ``what`` names the verb and object."""

    def __init__(self, err: int, what: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.what = what


class MalformedMessage(OSError):
    """What came back is not netlink (truncated, or lengths that do not add up): the peer's
    fault, never retried. An OSError, so a backend's ``map_errors`` reports it in one line."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.EBADMSG, f"malformed netlink message: {detail}")


# -- attributes -------------------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute: the header holds the unpadded length, the padding follows."""
    length = ATTR_HEADER.size + len(payload)
    return ATTR_HEADER.pack(length, kind) + payload + b"\0" * (align(length) - length)


def nest(kind: int, *parts: bytes) -> bytes:
    """Attributes inside an attribute, flagged nested (nfnetlink checks the flag)."""
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def iter_attrs(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type without flags, payload) of each attribute, in order; a short or overlong
    attribute ends the stream (the kernel's own parsers stop there too)."""
    end = len(data)
    while offset + ATTR_HEADER.size <= end:
        length, kind = ATTR_HEADER.unpack_from(data, offset)
        if length < ATTR_HEADER.size or offset + length > end:
            return
        yield kind & NLA_TYPE_MASK, data[offset + ATTR_HEADER.size : offset + length]
        offset += align(length)


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes by type (the last of each type wins)."""
    return dict(iter_attrs(data, offset))


def attr_list(data: bytes) -> list[bytes]:
    """The payloads of a list of attributes (a nested array: the types are indices)."""
    return [payload for _kind, payload in iter_attrs(data)]


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One message to send: its full type (nfnetlink: subsystem << 8 | message), its flags
    (``NLM_F_REQUEST`` is added), its body, and what it does, for errors."""

    kind: int
    flags: int
    body: bytes
    what: str = ""


class Received(NamedTuple):
    kind: int
    flags: int
    seq: int
    payload: bytes


def frame(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """One message with its header; the body is padded so that another can follow."""
    length = HEADER.size + len(body)
    return HEADER.pack(length, kind, flags, seq, 0) + body + b"\0" * (align(length) - length)


def parse_messages(data: bytes) -> Iterator[Received]:
    """The messages of one datagram; MalformedMessage for a header that does not fit."""
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < HEADER.size:
            raise MalformedMessage(f"{end - offset} bytes left, less than a header")
        length, kind, flags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > end:
            raise MalformedMessage(f"length {length} at offset {offset} of {end} bytes")
        yield Received(kind, flags, seq, data[offset + HEADER.size : offset + length])
        offset += align(length)


def error_code(msg: Received) -> int:
    """The errno of an NLMSG_ERROR (0: an ack) or of an NLMSG_DONE (a dump that failed
    part-way ends with a negative errno in it; an old kernel's empty DONE is 0)."""
    if len(msg.payload) < _ERRNO.size:
        if msg.kind == NLMSG_DONE:
            return 0
        raise MalformedMessage(f"NLMSG_ERROR of {len(msg.payload)} bytes")
    return -_ERRNO.unpack_from(msg.payload)[0]


@dataclass
class Answer:
    """What the kernel said to one request: its replies, then an errno (0: done)."""

    replies: list[bytes] = field(default_factory=list)
    error: int = 0


class Transport(Protocol):
    def send(self, data: bytes, /) -> int: ...

    def recv(self, bufsize: int, /) -> bytes: ...


class Socket:
    """Numbers requests, sends them in one buffer, and reads the answers: one loop for
    acks, batches, single replies and dumps. Not thread-safe; one per thread or lock."""

    def __init__(self, transport: Transport, bufsize: int = RECV_BUFFER) -> None:
        """``bufsize``: a datagram larger than this arrives cut, and is a MalformedMessage."""
        self.transport = transport
        self.bufsize = bufsize
        self._seq = 0

    def send(self, requests: Iterable[Request]) -> list[int]:
        """All requests in one ``send``: the kernel handles them in order. Their seqs."""
        seqs, frames = [], []
        for request in requests:
            self._seq = self._seq + 1 if self._seq < 0xFFFFFFFF else 1
            seqs.append(self._seq)
            frames.append(
                frame(request.kind, NLM_F_REQUEST | request.flags, self._seq, request.body)
            )
        self.transport.send(b"".join(frames))
        return seqs

    def receive(self, awaited: Mapping[int, int]) -> dict[int, Answer]:
        """Read until each awaited request (seq -> its flags) has ended: with an ack or
        error; a dump with NLMSG_DONE; a request without NLM_F_ACK with its one reply.
        Anything else (an earlier request's late answer, a notification) is skipped."""
        answers = {seq: Answer() for seq in awaited}
        pending = set(awaited)
        while pending:
            data = self.transport.recv(self.bufsize)
            if not data:
                raise MalformedMessage("the socket returned no data")
            for msg in parse_messages(data):
                if msg.seq not in pending:
                    continue
                answer = answers[msg.seq]
                if msg.kind in (NLMSG_ERROR, NLMSG_DONE):
                    answer.error = error_code(msg)
                    pending.discard(msg.seq)
                elif msg.kind != NLMSG_NOOP:
                    answer.replies.append(msg.payload)
                    flags = awaited[msg.seq]
                    if not flags & NLM_F_ACK and flags & NLM_F_DUMP != NLM_F_DUMP:
                        pending.discard(msg.seq)
        return answers

    def call(self, request: Request) -> list[bytes]:
        """One request; its replies (one, or a whole dump). NetlinkError on refusal."""
        (seq,) = self.send([request])
        answer = self.receive({seq: request.flags})[seq]
        if answer.error:
            raise NetlinkError(answer.error, request.what)
        return answer.replies

    def acks(self, requests: Sequence[Request]) -> list[int]:
        """Requests sent with NLM_F_ACK in one buffer; each one's errno (0: done)."""
        seqs = self.send(Request(r.kind, r.flags | NLM_F_ACK, r.body, r.what) for r in requests)
        answers = self.receive({seq: NLM_F_ACK for seq in seqs})
        return [answers[seq].error for seq in seqs]
