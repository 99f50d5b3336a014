"""The netlink core without a kernel: framing, attributes and the receive loop, driven by a
fake socket that answers what was sent with datagrams chosen by each test."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from helpers.netlink import FakeKernel, ack, done, reply

from lark_async.backends.netlink import core
from lark_async.backends.netlink.core import (
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    MalformedMessage,
    NetlinkError,
    Received,
    Request,
    Socket,
)

# -- framing ----------------------------------------------------------------------------------


def test_a_frame_has_the_unpadded_length_and_is_padded_to_four_bytes():
    data = core.frame(20, NLM_F_REQUEST, 7, b"abcde")
    assert core.HEADER.unpack_from(data) == (21, 20, NLM_F_REQUEST, 7, 0)
    assert len(data) == 24 and data[21:] == b"\0\0\0"
    assert list(core.parse_messages(data)) == [Received(20, NLM_F_REQUEST, 7, b"abcde")]


def test_messages_of_one_datagram_are_read_in_order():
    data = core.frame(1, 0, 1, b"a") + core.frame(2, 0, 2, b"") + core.frame(3, 0, 3, b"abcd")
    assert [(m.kind, m.seq, m.payload) for m in core.parse_messages(data)] == [
        (1, 1, b"a"),
        (2, 2, b""),
        (3, 3, b"abcd"),
    ]


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"\x10\0\0", "3 bytes left, less than a header"),
        (core.HEADER.pack(0, 1, 0, 1, 0), "length 0 at offset 0 of 16 bytes"),  # no progress
        (core.HEADER.pack(15, 1, 0, 1, 0), "length 15 at offset 0 of 16 bytes"),
        (core.HEADER.pack(40, 1, 0, 1, 0) + b"x" * 8, "length 40 at offset 0 of 24 bytes"),
        (core.frame(1, 0, 1, b"") + b"\x01\x02", "2 bytes left, less than a header"),
    ],
)
def test_a_truncated_or_garbled_datagram_is_a_malformed_message(data, detail):
    with pytest.raises(MalformedMessage) as info:
        list(core.parse_messages(data))
    assert info.value.errno == errno.EBADMSG
    assert str(info.value) == f"[Errno {errno.EBADMSG}] malformed netlink message: {detail}"


# -- attributes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "length", "total"),
    [(b"", 4, 4), (b"a", 5, 8), (b"abc", 7, 8), (b"abcd", 8, 8), (b"abcde", 9, 12)],
)
def test_an_attribute_has_the_unpadded_length_and_is_padded(payload, length, total):
    encoded = core.attr(9, payload)
    assert struct.unpack_from("=HH", encoded) == (length, 9)
    assert len(encoded) == total
    assert list(core.iter_attrs(encoded)) == [(9, payload)]


def test_a_nested_attribute_is_flagged_and_parsed_without_the_flag():
    encoded = core.nest(3, core.attr(1, b"x"), core.attr(2, b"yz"))
    assert struct.unpack_from("=HH", encoded)[1] == 3 | NLA_F_NESTED
    ((kind, inner),) = core.iter_attrs(encoded)
    assert kind == 3
    assert core.parse_attrs(inner) == {1: b"x", 2: b"yz"}
    assert core.attr_list(inner) == [b"x", b"yz"]


def test_the_last_attribute_of_a_type_wins_and_an_offset_skips_a_fixed_header():
    data = b"HEAD" + core.attr(1, b"old") + core.attr(1, b"new")
    assert core.parse_attrs(data, 4) == {1: b"new"}


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_truncated_attribute_stream_ends_at_the_last_whole_attribute(cut):
    data = core.attr(1, b"abcd") + core.attr(2, b"efgh")  # 8 + 8 bytes
    assert core.parse_attrs(data[: 16 - cut]) == ({1: b"abcd"} if cut <= 8 else {})


def test_an_attribute_shorter_than_its_header_stops_the_parse():
    assert core.parse_attrs(struct.pack("=HH", 2, 1) + core.attr(2, b"x")) == {}


# -- the receive loop -------------------------------------------------------------------------


def test_acks_of_many_requests_across_several_datagrams():
    kernel = FakeKernel(lambda sent: [ack(sent[0].seq), ack(sent[1].seq) + ack(sent[2].seq)])
    requests = [Request(16, 0, b"\0" * 16, f"r{i}") for i in range(3)]
    assert Socket(kernel).acks(requests) == [0, 0, 0]
    sent = list(core.parse_messages(kernel.sent[0]))
    assert len(kernel.sent) == 1  # one buffer
    assert [m.seq for m in sent] == [1, 2, 3]
    assert all(m.flags == NLM_F_REQUEST | NLM_F_ACK for m in sent)


def test_each_refusal_is_reported_with_its_errno():
    kernel = FakeKernel(lambda sent: [ack(sent[0].seq), ack(sent[1].seq, errno.ENODEV)])
    requests = [Request(16, 0, b""), Request(17, 0, b"")]
    assert Socket(kernel).acks(requests) == [0, errno.ENODEV]


def test_a_refused_call_raises_netlink_error_with_the_errno_and_what():
    kernel = FakeKernel(lambda sent: [ack(sent[0].seq, errno.EEXIST)])
    with pytest.raises(NetlinkError) as info:
        Socket(kernel).call(Request(16, NLM_F_ACK, b"", "create veth e_x/i_x"))
    assert isinstance(info.value, OSError)
    assert (info.value.errno, info.value.strerror) == (errno.EEXIST, "File exists")
    assert info.value.what == "create veth e_x/i_x"


def test_answers_to_other_requests_are_skipped():
    """A late answer to an earlier request, or a notification (seq 0), is not ours."""
    kernel = FakeKernel(lambda sent: [ack(99, errno.EPERM) + reply(0, b"event"), ack(sent[0].seq)])
    assert Socket(kernel).call(Request(16, NLM_F_ACK, b"")) == []


def test_a_get_without_ack_ends_with_its_one_reply():
    kernel = FakeKernel(lambda sent: [reply(sent[0].seq, b"link")])
    assert Socket(kernel).call(Request(18, 0, b"")) == [b"link"]


def test_a_get_with_ack_collects_its_replies_until_the_ack():
    kernel = FakeKernel(lambda sent: [reply(sent[0].seq, b"element"), ack(sent[0].seq)])
    assert Socket(kernel).call(Request(13, NLM_F_ACK, b"")) == [b"element"]


def test_a_dump_spans_datagrams_until_nlmsg_done():
    def answer(sent: list[Received]) -> list[bytes]:
        seq = sent[0].seq
        return [reply(seq, b"a") + reply(seq, b"b"), reply(seq, b"c"), done(seq)]

    kernel = FakeKernel(answer)
    assert Socket(kernel).call(Request(18, NLM_F_DUMP, b"")) == [b"a", b"b", b"c"]
    assert kernel.queue == []


def test_a_dump_that_fails_part_way_raises_the_errno_in_its_done():
    kernel = FakeKernel(lambda sent: [reply(sent[0].seq, b"a"), done(sent[0].seq, errno.EINTR)])
    with pytest.raises(NetlinkError) as info:
        Socket(kernel).call(Request(18, NLM_F_DUMP, b"", "list links"))
    assert (info.value.errno, info.value.what) == (errno.EINTR, "list links")


def test_a_refused_dump_raises_its_errno():
    kernel = FakeKernel(lambda sent: [ack(sent[0].seq, errno.EOPNOTSUPP)])
    with pytest.raises(NetlinkError) as info:
        Socket(kernel).call(Request(18, NLM_F_DUMP, b""))
    assert info.value.errno == errno.EOPNOTSUPP


def test_an_error_message_too_short_for_its_errno_is_malformed():
    kernel = FakeKernel(lambda sent: [core.frame(NLMSG_ERROR, 0, sent[0].seq, b"\0\0")])
    with pytest.raises(MalformedMessage):
        Socket(kernel).call(Request(16, NLM_F_ACK, b""))


def test_garbage_from_the_kernel_is_malformed_not_a_hang():
    kernel = FakeKernel(lambda sent: [b"\0" * 20])
    with pytest.raises(MalformedMessage):
        Socket(kernel).call(Request(16, NLM_F_ACK, b""))


def test_a_socket_that_returns_nothing_is_malformed_not_a_hang():
    kernel = FakeKernel(lambda sent: [b""])
    with pytest.raises(MalformedMessage):
        Socket(kernel).call(Request(16, NLM_F_ACK, b""))


def test_sequence_numbers_keep_counting_across_calls():
    kernel = FakeKernel(lambda sent: [ack(m.seq) for m in sent])
    sock = Socket(kernel)
    sock.acks([Request(16, 0, b""), Request(16, 0, b"")])
    sock.call(Request(16, NLM_F_ACK, b""))
    assert [m.seq for data in kernel.sent for m in core.parse_messages(data)] == [1, 2, 3]


def test_over_a_real_datagram_socket():
    """The loop on a socketpair: the far end plays the kernel, one datagram per send."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, theirs:
        sock = Socket(ours)
        seqs = sock.send([Request(18, NLM_F_DUMP, b"")])
        sent = list(core.parse_messages(theirs.recv(1024)))
        assert [(m.kind, m.flags, m.seq) for m in sent] == [(18, NLM_F_REQUEST | NLM_F_DUMP, 1)]
        theirs.send(reply(seqs[0], b"a"))
        theirs.send(reply(seqs[0], b"b") + done(seqs[0]))
        answer = sock.receive({seqs[0]: NLM_F_DUMP})[seqs[0]]
        assert (answer.replies, answer.error) == ([b"a", b"b"], 0)


def test_a_datagram_larger_than_the_buffer_arrives_cut_and_is_malformed():
    kernel = FakeKernel(lambda sent: [reply(sent[0].seq, b"x" * 64)])
    with pytest.raises(MalformedMessage):
        Socket(kernel, bufsize=32).call(Request(18, 0, b""))
