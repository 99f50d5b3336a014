"""A fake netlink peer for unit tests: it answers what was sent with chosen datagrams."""

from __future__ import annotations

import struct
from collections.abc import Callable

from lark_async.backends.netlink import core
from lark_async.backends.netlink.core import (
    NLM_F_ACK,
    NLM_F_MULTI,
    NLMSG_DONE,
    NLMSG_ERROR,
    Received,
)

Answer = Callable[[list[Received]], list[bytes]]


class FakeKernel:
    """A transport: each ``send`` is parsed and ``answer`` turns it into the datagrams the
    following ``recv`` calls return, one per call, as a netlink socket does."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def send(self, data: bytes, /) -> int:
        self.sent.append(data)
        self.queue += self.answer(list(core.parse_messages(data)))
        return len(data)

    def recv(self, bufsize: int, /) -> bytes:
        if not self.queue:
            raise AssertionError("the loop read past the end of what the kernel sent")
        return self.queue.pop(0)[:bufsize]


def ack(seq: int, err: int = 0) -> bytes:
    """NLMSG_ERROR: a negative errno (0: an ack), then the request's header."""
    body = struct.pack("=i", -err) + core.HEADER.pack(16, 0, 0, seq, 0)
    return core.frame(NLMSG_ERROR, 0, seq, body)


def reply(seq: int, payload: bytes, kind: int = 100) -> bytes:
    return core.frame(kind, NLM_F_MULTI, seq, payload)


def done(seq: int, err: int = 0) -> bytes:
    return core.frame(NLMSG_DONE, NLM_F_MULTI, seq, struct.pack("=i", -err))


def ack_all(sent: list[Received]) -> list[bytes]:
    """A kernel that accepts everything: an ack for each message that asks for one."""
    return [ack(msg.seq) for msg in sent if msg.flags & NLM_F_ACK]
