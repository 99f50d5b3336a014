"""The DHCP codec: round trips, hostile bytes, RFC 3396 long options, option overload."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp import options as opt
from dhcp.errors import MalformedMessage
from dhcp.message import (
    BOOTREPLY,
    BOOTREQUEST,
    HEADER_SIZE,
    MAGIC_COOKIE,
    MIN_SIZE,
    Message,
    decode,
    encode,
)

MAC = bytes.fromhex("02aabbccddee")
IP = ipaddress.IPv4Address


def discover(**options: bytes) -> Message:
    opts = {opt.MESSAGE_TYPE: bytes([opt.MessageType.DISCOVER])}
    opts.update({int(k.removeprefix("o")): v for k, v in options.items()})
    return Message(op=BOOTREQUEST, xid=0x12345678, chaddr=MAC, options=opts, flags=0x8000)


def test_round_trip_keeps_every_field():
    msg = Message(
        op=BOOTREPLY,
        xid=7,
        chaddr=MAC,
        secs=3,
        flags=0x8000,
        ciaddr=IP("10.0.0.1"),
        yiaddr=IP("10.0.0.2"),
        siaddr=IP("10.0.0.3"),
        giaddr=IP("10.0.0.4"),
        hops=1,
        sname=b"server",
        file=b"boot.img",
        options={opt.MESSAGE_TYPE: b"\x05", opt.LEASE_TIME: b"\0\0\x0e\x10"},
    )
    assert decode(encode(msg)) == msg


def test_message_type_comes_first_and_the_options_end_with_end():
    wire = encode(discover(o61=b"\xff\0\0\0\1abc"))
    assert wire[HEADER_SIZE:MIN_SIZE] == MAGIC_COOKIE
    assert wire[MIN_SIZE : MIN_SIZE + 3] == bytes([53, 1, 1])
    assert wire[-1] == opt.END


def test_message_type_is_read_or_none():
    assert discover().message_type is opt.MessageType.DISCOVER
    assert Message(op=1, xid=1, chaddr=MAC, options={53: b"\x63"}).message_type is None
    assert Message(op=1, xid=1, chaddr=MAC).message_type is None


@pytest.mark.parametrize("cut", range(0, MIN_SIZE))
def test_anything_shorter_than_header_and_cookie_is_malformed(cut):
    with pytest.raises(MalformedMessage):
        decode(encode(discover())[:cut])


def test_every_truncation_inside_the_options_is_malformed_or_a_prefix():
    wire = encode(discover(o12=b"host", o61=b"\xff" + b"x" * 20))
    for cut in range(MIN_SIZE, len(wire)):
        try:
            msg = decode(wire[:cut])
        except MalformedMessage:
            continue
        assert set(msg.options) <= {53, 12, 61}


def test_trailing_bytes_after_end_are_ignored():
    wire = encode(discover())
    assert decode(wire + b"\x01\x04junkjunk") == decode(wire)


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ((HEADER_SIZE, b"\x63\x82\x53\x64"), "cookie"),
        ((0, b"\x03"), "op"),
        ((2, b"\x11"), "hardware address length"),
    ],
)
def test_wrong_cookie_op_or_hlen_is_malformed(patch, reason):
    wire = bytearray(encode(discover()))
    offset, value = patch
    wire[offset : offset + len(value)] = value
    with pytest.raises(MalformedMessage, match=reason):
        decode(bytes(wire))


def test_an_option_length_that_lies_is_malformed():
    wire = encode(discover())[:MIN_SIZE] + bytes([53, 1, 1, 12, 200]) + b"short"
    with pytest.raises(MalformedMessage, match="runs past the end"):
        decode(wire)


def test_long_options_are_split_and_concatenated_rfc3396():
    long_id = bytes(range(256)) + b"tail"
    wire = encode(discover(o61=long_id))
    assert wire.count(bytes([61, 255])) == 1  # first piece full, the rest in a second TLV
    assert decode(wire).options[61] == long_id


def _reply_with_overload(value: int, file_opts: bytes, sname_opts: bytes) -> bytes:
    base = bytearray(encode(Message(op=BOOTREPLY, xid=1, chaddr=MAC)))
    base[44 + 64 : 44 + 64 + len(file_opts)] = file_opts  # file field
    base[44 : 44 + len(sname_opts)] = sname_opts  # sname field
    return bytes(base[:MIN_SIZE]) + bytes([53, 1, 5, 52, 1, value, 255])


def test_overload_reads_file_then_sname():
    wire = _reply_with_overload(
        3, bytes([12, 2]) + b"ab" + b"\xff", bytes([12, 2]) + b"cd" + b"\xff"
    )
    msg = decode(wire)
    assert msg.options[12] == b"abcd"
    assert msg.file == b"" and msg.sname == b""
    assert opt.OVERLOAD not in msg.options


@pytest.mark.parametrize("where", ["file", "sname"])
def test_an_overload_found_inside_file_or_sname_makes_the_message_malformed(where):
    # RFC 2132 section 9.3: option 52 is valid only in the options field
    inner = bytes([52, 1, 3, 12, 1]) + b"z" + b"\xff"
    wire = _reply_with_overload(3, *((inner, b"") if where == "file" else (b"\xff", inner)))
    with pytest.raises(MalformedMessage, match="overload inside"):
        decode(wire)
    clean = _reply_with_overload(1, bytes([12, 1]) + b"z" + b"\xff", b"")
    assert decode(clean).options[12] == b"z" and opt.OVERLOAD not in decode(clean).options


@pytest.mark.parametrize("value", [b"", b"\x04", b"\x01\x02"])
def test_a_bad_overload_value_is_malformed(value):
    wire = encode(Message(op=BOOTREPLY, xid=1, chaddr=MAC))[:MIN_SIZE]
    wire += bytes([52, len(value)]) + value + b"\xff"
    with pytest.raises(MalformedMessage):
        decode(wire)


def test_classless_routes_round_trip_and_reject_nonsense():
    routes = (
        (ipaddress.IPv4Network("0.0.0.0/0"), IP("10.0.0.1")),
        (ipaddress.IPv4Network("10.1.0.0/16"), IP("10.0.0.2")),
        (ipaddress.IPv4Network("192.168.5.128/25"), IP("10.0.0.3")),
    )
    assert opt.classless_routes(opt.encode_classless_routes(routes)) == routes
    with pytest.raises(MalformedMessage, match="over 32"):
        opt.classless_routes(bytes([33]) + b"\0" * 8)
    with pytest.raises(MalformedMessage, match="past the end"):
        opt.classless_routes(bytes([24, 10, 1]))
    assert opt.classless_routes(bytes([8, 10, 1, 1, 1, 1]))[0][0].prefixlen == 8
    with pytest.raises(MalformedMessage, match="not a network"):
        opt.classless_routes(bytes([7, 11, 1, 1, 1, 1]))  # 11/7 has a host bit set


def test_client_id_is_the_rfc4361_form_and_differs_per_iaid():
    duid = opt.duid_ll(MAC)
    a, b = opt.client_id(1, duid), opt.client_id(2, duid)
    assert a[0] == 255 and a[1:5] == b"\0\0\0\1" and a[5:] == b"\0\3\0\1" + MAC
    assert a != b


def test_typed_views_check_lengths():
    assert opt.u32(b"\0\0\1\0", 51) == 256
    assert opt.addresses(b"\1\1\1\1\2\2\2\2", 6) == (IP("1.1.1.1"), IP("2.2.2.2"))
    assert opt.text(b"node\x07\0junk") == "node?"
    for bad in (
        lambda: opt.u32(b"\0", 51),
        lambda: opt.address(b"", 54),
        lambda: opt.addresses(b"\1\2\3", 6),
        lambda: opt.u16(b"\0", 57),
    ):
        with pytest.raises(MalformedMessage):
            bad()


# -- fuzzing: decoding returns a Message or raises MalformedMessage, nothing else ---


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=700))
def test_fuzz_random_bytes(data):
    with contextlib.suppress(MalformedMessage):
        decode(data)


@pytest.mark.slow
@settings(max_examples=4000, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"", b"\x34\x01\x01", b"\x34\x01\x03"]))
def test_fuzz_valid_header_random_options(tail, overload):
    head = encode(Message(op=BOOTREPLY, xid=9, chaddr=MAC))[:MIN_SIZE]
    for data in (head + overload + tail, head + tail):
        with contextlib.suppress(MalformedMessage):
            decode(data)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(
        st.integers(1, 254).filter(lambda c: c != opt.OVERLOAD),
        st.binary(min_size=1, max_size=600),
        max_size=8,
    ),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=0, max_size=16),
)
def test_fuzz_encode_decode_round_trip(options, xid, chaddr):
    msg = Message(op=BOOTREQUEST, xid=xid, chaddr=chaddr, options=options)
    assert decode(encode(msg)) == msg


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_classless_routes(data):
    with contextlib.suppress(MalformedMessage):
        opt.classless_routes(data)


# -- the wire layout of RFC 2131 figure 1, byte by byte ---------------------------------


def _golden() -> tuple[Message, bytes]:
    msg = Message(
        op=BOOTREPLY,
        xid=0x01020304,
        chaddr=MAC,
        secs=0x0506,
        flags=0x8000,
        ciaddr=IP("10.0.0.1"),
        yiaddr=IP("10.0.0.2"),
        siaddr=IP("10.0.0.3"),
        giaddr=IP("10.0.0.4"),
        hops=2,
        sname=b"srv",
        file=b"boot",
        options={opt.MESSAGE_TYPE: b"\x05", opt.SERVER_ID: IP("10.0.0.3").packed},
    )
    wire = (
        bytes([2, 1, 6, 2])  # op, htype (Ethernet), hlen, hops
        + bytes.fromhex("01020304 0506 8000")  # xid, secs, flags
        + bytes([10, 0, 0, 1, 10, 0, 0, 2, 10, 0, 0, 3, 10, 0, 0, 4])  # ciaddr..giaddr
        + MAC.ljust(16, b"\0")
        + b"srv".ljust(64, b"\0")
        + b"boot".ljust(128, b"\0")
        + MAGIC_COOKIE
        + bytes([53, 1, 5, 54, 4, 10, 0, 0, 3, 255])
    )
    return msg, wire


def test_encode_puts_every_field_at_its_rfc2131_offset():
    msg, wire = _golden()
    assert encode(msg) == wire


def test_decode_reads_every_field_from_its_rfc2131_offset():
    msg, wire = _golden()
    assert decode(wire) == msg


def test_option_order_puts_the_given_codes_first_then_the_rest_by_code():
    msg = discover(o61=b"\1id", o12=b"h", o55=b"\1\3")
    options = encode(msg, option_order=(55, 53, 99))[MIN_SIZE:]
    assert options == bytes([55, 2, 1, 3, 53, 1, 1, 12, 1]) + b"h" + bytes([61, 3]) + b"\1id\xff"
    default = encode(msg)[MIN_SIZE:]
    assert default == bytes([53, 1, 1, 12, 1]) + b"h" + bytes([55, 2, 1, 3, 61, 3]) + b"\1id\xff"


def test_a_message_with_no_options_at_all_is_still_a_message():
    wire = encode(Message(op=BOOTREPLY, xid=1, chaddr=MAC))[:MIN_SIZE]  # no END either
    assert decode(wire) == Message(op=BOOTREPLY, xid=1, chaddr=MAC)


def test_a_hardware_address_of_16_bytes_is_the_longest():
    msg = Message(op=BOOTREQUEST, xid=1, chaddr=bytes(range(1, 17)))
    assert decode(encode(msg)).chaddr == bytes(range(1, 17))
    with pytest.raises(ValueError, match=r"^chaddr is at most 16 bytes$"):
        encode(Message(op=BOOTREQUEST, xid=1, chaddr=bytes(17)))


def test_sname_and_file_are_cut_to_their_fields_and_read_without_padding():
    msg = Message(op=BOOTREPLY, xid=1, chaddr=MAC, sname=b"s" * 70, file=b"f" * 130)
    wire = encode(msg)
    assert len(wire) == MIN_SIZE + 1
    back = decode(wire)
    assert (back.sname, back.file) == (b"s" * 64, b"f" * 128)


def test_the_reasons_a_message_is_malformed_are_named():
    wire = encode(discover())
    with pytest.raises(MalformedMessage, match=r"^239 bytes is shorter than a DHCP message$"):
        decode(wire[: MIN_SIZE - 1])
    with pytest.raises(MalformedMessage, match=r"^op 0 is neither request nor reply$"):
        decode(b"\0" + wire[1:])
    with pytest.raises(MalformedMessage, match=r"^hardware address length 17 is over 16$"):
        decode(wire[:2] + b"\x11" + wire[3:])


def test_the_reasons_a_body_is_malformed_name_the_field_and_the_rule():
    head = encode(Message(op=BOOTREPLY, xid=1, chaddr=MAC))[:MIN_SIZE]
    with pytest.raises(MalformedMessage, match=r"^no DHCP magic cookie$"):
        decode(head[:HEADER_SIZE] + b"\0\0\0\0")
    with pytest.raises(MalformedMessage, match=r"^option 12 in options runs past the end$"):
        decode(head + bytes([53, 1, 5, 12, 9]) + b"short")
    with pytest.raises(MalformedMessage, match=r"^option overload must be 1, 2 or 3$"):
        decode(head + bytes([52, 1, 4, 255]))
    lying_file = _reply_with_overload(1, bytes(126) + bytes([12, 9]), b"")  # PADs, then 12
    with pytest.raises(MalformedMessage, match=r"^option 12 in file runs past the end$"):
        decode(lying_file)
    lying_sname = _reply_with_overload(2, b"", bytes(62) + bytes([12, 9]))
    with pytest.raises(MalformedMessage, match=r"^option 12 in sname runs past the end$"):
        decode(lying_sname)


def test_overload_2_reads_sname_only_and_keeps_the_boot_file_name():
    wire = _reply_with_overload(2, b"pxelinux.0", bytes([12, 2]) + b"cd" + b"\xff")
    msg = decode(wire)
    assert msg.options[12] == b"cd" and msg.sname == b"" and msg.file == b"pxelinux.0"
    assert opt.OVERLOAD not in msg.options


def test_equal_messages_hash_alike_so_a_retransmitted_reply_is_seen_once():
    msg, wire = _golden()
    assert decode(wire) is not msg and len({decode(wire), msg, decode(encode(msg))}) == 1


def test_overload_1_reads_file_only_and_keeps_the_server_name():
    wire = _reply_with_overload(1, bytes([12, 2]) + b"ab" + b"\xff", b"dhcp-1.example")
    msg = decode(wire)
    assert msg.options[12] == b"ab" and msg.file == b"" and msg.sname == b"dhcp-1.example"


def test_htype_sname_and_file_are_read_as_sent():
    msg = Message(op=BOOTREPLY, xid=1, chaddr=MAC, htype=6, sname=b"BOX", file=b"IMGX")
    assert decode(encode(msg)) == msg  # only NUL padding is stripped
    inner = bytes([52, 1, 3, 255])
    with pytest.raises(MalformedMessage, match=r"^option overload inside the file or sname field$"):
        decode(_reply_with_overload(1, inner, b""))
