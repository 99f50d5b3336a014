"""The DHCPv6 codec: golden bytes built by hand from RFC 8415's formats, round trips, and
every malformation refused with a MalformedMessage that names it."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from dhcp6 import options as opt
from dhcp6.errors import MalformedMessage
from dhcp6.message import MAX_SIZE, Message, decode, encode

MT = opt.MessageType
IP6 = ipaddress.IPv6Address
MAC = bytes.fromhex("02aabbccddee")
CLIENT_DUID = bytes.fromhex("00030001") + MAC  # DUID-LL
SERVER_DUID = bytes.fromhex("0001000129c3a1b2") + bytes.fromhex("0200000000fe")  # DUID-LLT
ADDR = IP6("2001:db8:77::50")


def tlv(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def header(kind: int, xid: int = 0x100874) -> bytes:
    return bytes((kind,)) + xid.to_bytes(3, "big")


# RFC 8415 section 8 (header), 21.2-21.9, 21.13, 21.14, RFC 3646 sections 3-4
GOLDEN_SOLICIT = (
    header(1)
    + tlv(1, CLIENT_DUID)
    + tlv(3, struct.pack("!III", 7, 0, 0))
    + tlv(6, bytes.fromhex("0017 0018 0052"))
    + tlv(14, b"")
    + tlv(8, b"\x00\x00")
)
GOLDEN_REPLY = (
    header(7)
    + tlv(2, SERVER_DUID)
    + tlv(1, CLIENT_DUID)
    + tlv(
        3,
        struct.pack("!III", 7, 1800, 2880)
        + tlv(5, ADDR.packed + struct.pack("!II", 3600, 7200) + tlv(13, b"\x00\x00ok"))
        + tlv(13, b"\x00\x00"),
    )
    + tlv(14, b"")
    + tlv(23, IP6("2001:db8::53").packed + IP6("2001:db8::54").packed)
    + tlv(24, b"\x07example\x03com\x00\x03lab\x07example\x03org\x00")
    + tlv(7, b"\xff")
    + tlv(82, struct.pack("!I", 600))
)

SOLICIT = Message(
    MT.SOLICIT,
    0x100874,
    (
        opt.ClientId(CLIENT_DUID),
        opt.IaNa(7),
        opt.OptionRequest((23, 24, 82)),
        opt.RapidCommit(),
        opt.ElapsedTime(0),
    ),
)
REPLY = Message(
    MT.REPLY,
    0x100874,
    (
        opt.ServerId(SERVER_DUID),
        opt.ClientId(CLIENT_DUID),
        opt.IaNa(
            7,
            1800,
            2880,
            (
                opt.IaAddress(ADDR, 3600, 7200, (opt.StatusCode(0, b"ok"),)),
                opt.StatusCode(0),
            ),
        ),
        opt.RapidCommit(),
        opt.DnsServers((IP6("2001:db8::53"), IP6("2001:db8::54"))),
        opt.DomainList(("example.com", "lab.example.org")),
        opt.Preference(255),
        opt.SolMaxRt(600),
    ),
)


@pytest.mark.parametrize(("msg", "wire"), [(SOLICIT, GOLDEN_SOLICIT), (REPLY, GOLDEN_REPLY)])
def test_golden_bytes_both_ways(msg, wire):
    assert encode(msg) == wire
    assert decode(wire) == msg


def test_every_kept_option_round_trips():
    msg = Message(
        MT.ADVERTISE,
        0xFFFFFF,
        (
            opt.ServerId(SERVER_DUID),
            opt.Auth(bytes(11) + b"key"),
            opt.Unicast(IP6("2001:db8::1")),
            opt.ReconfigureAccept(),
            opt.ReconfigureMessage(5),
            opt.StatusCode(2, "no addresses \u00e9".encode()),
            opt.Unknown(17, b"vendor"),
            opt.Unknown(17, b"vendor"),
            opt.Unknown(999, b""),
            opt.IaNa(1),
            opt.IaNa(2, options=(opt.Unknown(26, b"x" * 25),)),
        ),
    )
    assert decode(encode(msg)) == msg
    assert msg.get(opt.IaNa) == opt.IaNa(1) and len(msg.all(opt.IaNa)) == 2
    assert msg.get(opt.ClientId) is None


def test_the_message_type_and_24_bit_xid():
    msg = decode(header(2, 0xABCDEF))
    assert (msg.msg_type, msg.xid, msg.options) == (MT.ADVERTISE, 0xABCDEF, ())
    with pytest.raises(ValueError, match="24 bits"):
        encode(Message(MT.SOLICIT, 1 << 24))


def test_status_text_is_printable_only():
    status = opt.StatusCode(2, b"bad\x1b[31m\xff")
    assert status.text == "bad?[31m?" and status.name == "NO_ADDRS_AVAIL"
    assert opt.StatusCode(99).name == "status 99"


@pytest.mark.parametrize("kind", [12, 13])
def test_relay_messages_are_refused(kind):
    with pytest.raises(MalformedMessage, match="relay message"):
        decode(header(kind) + tlv(9, GOLDEN_REPLY))
    with pytest.raises(ValueError, match=r"^relay messages are not client/server messages$"):
        encode(Message(MT(kind), 1))


@pytest.mark.parametrize("kind", [0, 14, 20, 255])
def test_other_message_types_are_refused(kind):
    with pytest.raises(MalformedMessage, match="not a client/server message"):
        decode(header(kind))


@pytest.mark.parametrize("cut", range(4))
def test_shorter_than_a_header(cut):
    with pytest.raises(MalformedMessage, match="shorter than"):
        decode(GOLDEN_REPLY[:cut])


def test_every_truncation_is_malformed_or_a_message_that_stops_at_an_option():
    for cut in range(4, len(GOLDEN_REPLY)):
        try:
            msg = decode(GOLDEN_REPLY[:cut])
        except MalformedMessage:
            continue
        assert msg.options == REPLY.options[: len(msg.options)]


def test_trailing_junk_is_malformed():
    for junk in (b"\x00", b"\x00\x01", b"\x00\x01\x00"):
        with pytest.raises(MalformedMessage, match="stray bytes"):
            decode(GOLDEN_REPLY + junk)


def test_too_big_is_refused_before_parsing():
    with pytest.raises(MalformedMessage, match=r"^4097 bytes is over 4096$"):
        decode(header(7) + tlv(999, bytes(MAX_SIZE - 8 + 1)))
    assert decode(header(7) + tlv(999, bytes(MAX_SIZE - 8))).options[0].code == 999


def test_too_many_options():
    with pytest.raises(MalformedMessage, match="more than 64 options"):
        decode(header(7) + tlv(999, b"") * 65)
    assert len(decode(header(7) + tlv(999, b"") * 64).options) == 64


def test_nested_options_count_against_the_limit():
    inner = tlv(5, ADDR.packed + bytes(8) + tlv(999, b"") * 40)
    with pytest.raises(MalformedMessage, match="more than 64"):
        decode(header(7) + tlv(3, bytes(12) + inner) + tlv(3, struct.pack("!III", 2, 0, 0) + inner))


def test_a_length_past_the_end():
    with pytest.raises(MalformedMessage, match="runs past"):
        decode(header(7) + struct.pack("!HH", 23, 0xFFFF) + bytes(16))
    with pytest.raises(MalformedMessage, match="runs past an IA_NA"):
        decode(header(7) + tlv(3, bytes(12) + struct.pack("!HH", 5, 100) + bytes(24)))


def test_deep_nesting_is_refused_by_the_table_not_the_stack():
    wire = tlv(999, b"")
    for _ in range(2000):  # far past Python's recursion limit, far below the size limit
        wire = struct.pack("!HH", 3, 12 + len(wire)) + bytes(12) + wire
        if len(wire) > MAX_SIZE - 30:
            break
    with pytest.raises(MalformedMessage, match=r"IA_NA \(3\) inside an IA_NA"):
        decode(header(7) + wire)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (tlv(5, ADDR.packed + bytes(8)), r"IAADDR \(5\) inside the message"),
        (tlv(3, bytes(12) + tlv(1, CLIENT_DUID)), r"CLIENTID \(1\) inside an IA_NA"),
        (
            tlv(3, bytes(12) + tlv(5, ADDR.packed + bytes(8) + tlv(5, bytes(24)))),
            "inside an IAADDR",
        ),
        (tlv(9, b"x" * 20), r"RELAY_MSG \(9\) inside the message"),
        (tlv(18, b"eth0"), r"INTERFACE_ID \(18\) inside"),
    ],
)
def test_options_out_of_place(wire, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode(header(7) + wire)


@pytest.mark.parametrize(
    "option",
    [
        tlv(1, CLIENT_DUID),
        tlv(2, SERVER_DUID),
        tlv(7, b"\x01"),
        tlv(8, b"\0\0"),
        tlv(13, b"\0\0"),
        tlv(14, b""),
        tlv(23, bytes(16)),
        tlv(24, b"\x01a\x00"),
        tlv(82, bytes(4)),
        tlv(11, bytes(11)),
        tlv(6, b"\0\x17"),
    ],
)
def test_options_the_rfc_allows_once_are_refused_twice(option):
    with pytest.raises(MalformedMessage, match="twice in the message"):
        decode(header(7) + option + option)


def test_a_status_code_twice_in_one_ia():
    status = tlv(13, b"\0\0")
    with pytest.raises(MalformedMessage, match=r"STATUS_CODE \(13\) twice in an IA_NA"):
        decode(header(7) + tlv(3, bytes(12) + status + status))


def test_ia_na_and_iaaddr_may_repeat():
    addr = tlv(5, ADDR.packed + bytes(8))
    msg = decode(header(7) + tlv(3, bytes(12) + addr + addr) + tlv(3, bytes(12)))
    assert len(msg.all(opt.IaNa)) == 2 and len(msg.all(opt.IaNa)[0].addresses) == 2


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (tlv(1, b"\0\3"), "CLIENTID DUID of 2 bytes"),
        (tlv(2, b"\0\2" + bytes(129)), "SERVERID DUID of 131 bytes"),
        (tlv(2, b"\0\4" + bytes(15)), "DUID-UUID of 17 bytes"),
        (tlv(2, b"\0\1\0\1" + bytes(4)), "type 1 of 8 bytes is too short"),
        (tlv(2, b"\0\3\0\1"), "of 4 bytes"),
        (tlv(3, bytes(11)), "IA_NA of 11 bytes"),
        (tlv(3, bytes(12) + tlv(5, bytes(23))), "IAADDR of 23 bytes"),
        (tlv(6, b"\0\x17\0"), "ORO of 3 bytes"),
        (tlv(7, b""), "PREFERENCE must be 1 bytes, not 0"),
        (tlv(8, b"\0"), "ELAPSED_TIME must be 2 bytes"),
        (tlv(11, bytes(10)), "AUTH of 10 bytes"),
        (tlv(12, bytes(4)), "UNICAST must be 16 bytes"),
        (tlv(13, b"\0"), "STATUS_CODE of 1 bytes"),
        (tlv(14, b"\0"), "RAPID_COMMIT must be 0 bytes"),
        (tlv(19, b"\x07"), "RECONF_MSG asks for message type 7"),
        (tlv(19, b""), "RECONF_MSG must be 1 bytes"),
        (tlv(20, b"x"), "RECONF_ACCEPT must be 0 bytes"),
        (tlv(23, bytes(17)), "DNS_SERVERS of 17 bytes"),
        (tlv(82, bytes(3)), "SOL_MAX_RT must be 4 bytes"),
    ],
)
def test_wrong_sizes_are_named(wire, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode(header(7) + wire)


def test_unknown_duid_types_are_opaque():
    msg = decode(header(7) + tlv(2, b"\xff\xff\x01"))
    assert msg.get(opt.ServerId) == opt.ServerId(b"\xff\xff\x01")


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        (b"\x07example\x03com", "runs past the end"),
        (b"\x07example\xc0\x0c", "compression pointer"),
        (b"\x40" + b"a" * 64 + b"\0", "a 64-octet label"),
        (b"\x07exa\x00ple\x00", "dot or a byte"),
        (b"\x03a.b\x00", "dot or a byte"),
        (b"\x03a b\x00", "dot or a byte"),
        (b"\x00", "the root"),
        (b"\x05short\x09", "runs past"),
        ((b"\x3f" + b"a" * 63) * 4 + b"\0", "over 255 octets"),
    ],
)
def test_broken_domain_lists(names, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode(header(7) + tlv(24, names))


def test_the_longest_name_fits():
    name = ".".join(["a" * 63] * 3 + ["a" * 61])  # 3*64 + 62 + 1 = 255 octets
    wire = opt.encode_name(name)
    assert len(wire) == 255 and opt.decode_names(wire) == (name,)
    with pytest.raises(ValueError):
        opt.encode_name(name + "a")
    with pytest.raises(ValueError):
        opt.encode_name("a..b")
    assert opt.encode_name("example.com.") == opt.encode_name("example.com")


def test_an_option_value_over_65535_bytes_cannot_be_encoded():
    with pytest.raises(ValueError, match="over 65535"):
        encode(Message(MT.SOLICIT, 1, (opt.Unknown(999, bytes(65536)),)))


# -- bounds and words (mutation testing: bench/mutation.py dhcp6) ---------------------------

ALL_ONES = 0xFFFFFFFF  # section 7.7's infinity, and the largest of every 32-bit field


def test_every_field_round_trips_at_its_largest():
    """Unsigned all the way: an infinite lease, the largest IAID, code and status."""
    address = opt.IaAddress(IP6("2001:db8::5"), ALL_ONES, ALL_ONES)
    options = (
        opt.IaNa(ALL_ONES, ALL_ONES, ALL_ONES, (address,)),
        opt.OptionRequest((0xFFFF, 23)),
        opt.ElapsedTime(0xFFFF),  # section 21.9: "more than 655.34 seconds"
        opt.StatusCode(0xFFFF, b"?"),
        opt.SolMaxRt(ALL_ONES),
    )
    wire = header(7) + b"".join(tlv(o.code, o.value()) for o in options)
    assert wire[4:] == (
        tlv(3, b"\xff" * 12 + tlv(5, IP6("2001:db8::5").packed + b"\xff" * 8))
        + tlv(6, b"\xff\xff\x00\x17")
        + tlv(8, b"\xff\xff")
        + tlv(13, b"\xff\xff?")
        + tlv(82, b"\xff" * 4)
    )
    assert decode(wire).options == options
    assert encode(decode(wire)) == wire


def test_an_option_value_of_65535_bytes_is_the_largest_encoded():
    wire = encode(Message(MT.SOLICIT, 1, (opt.Unknown(0xFFFF, bytes(65535)),)))
    assert wire[4:8] == b"\xff\xff\xff\xff" and len(wire) == 4 + 4 + 65535


@pytest.mark.parametrize(
    "duid",
    [
        b"\0\1\0\1" + bytes(5),  # DUID-LLT: type, hardware type, time and a 1-byte address
        b"\0\2" + bytes(5),  # DUID-EN: enterprise number and a 1-byte id
        b"\0\3\0\1\x02",  # DUID-LL: hardware type and a 1-byte address
        b"\xff\xff" + bytes(128),  # 130 octets, of a type nobody knows
    ],
)
def test_the_shortest_and_longest_duids_are_taken(duid):
    assert opt.check_duid(duid, "their") == duid


@pytest.mark.parametrize(
    ("duid", "message"),
    [
        (b"\0\1\0\1" + bytes(4), "their DUID type 1 of 8 bytes is too short"),
        (b"\0\2" + bytes(4), "their DUID type 2 of 6 bytes is too short"),
        (b"\0\3\0\1", "their DUID type 3 of 4 bytes is too short"),
        (b"\xff\xff" + bytes(129), "their DUID of 131 bytes (3-130)"),
    ],
)
def test_a_duid_one_byte_out_is_refused_word_for_word(duid, message):
    with pytest.raises(MalformedMessage) as caught:
        opt.check_duid(duid, "their")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (b"\x07example\x03com", "a domain name runs past the end of DOMAIN_LIST"),
        (b"\x05short\x09", "a domain label runs past the end of DOMAIN_LIST"),
        (b"\x07example\xc0\x0c", "a compression pointer or a 192-octet label"),
        (b"\x03a b\x00", "a domain label with a dot or a byte that is not text"),
        (b"\x01\x7f\x00", "a domain label with a dot or a byte that is not text"),
        ((b"\x3f" + b"a" * 63) * 4 + b"\0", "a domain name over 255 octets"),
        (b"\x00", "the root as a search domain"),
    ],
)
def test_broken_domain_lists_word_for_word(names, message):
    with pytest.raises(MalformedMessage) as caught:
        opt.decode_names(names)
    assert str(caught.value) == message


def test_every_printable_byte_but_the_dot_is_a_label_byte():
    assert opt.decode_names(b"\x02!~\x00\x01a\x00") == ("!~", "a")


def test_stray_bytes_are_counted():
    for junk in (b"\x00", b"\x00\x01", b"\x00\x01\x00"):
        with pytest.raises(MalformedMessage) as caught:
            decode(GOLDEN_REPLY + junk)
        assert str(caught.value) == f"{len(junk)} stray bytes after the options of the message"


def test_a_name_of_one_letter_labels_and_what_cannot_be_encoded_word_for_word():
    assert opt.encode_name("a.b") == b"\x01a\x01b\x00"
    with pytest.raises(ValueError) as caught:
        opt.encode_name("a..b")
    assert str(caught.value) == "label '' of 'a..b' is not 1-63 octets"
    long = ".".join(["a" * 63] * 4)
    with pytest.raises(ValueError) as caught:
        opt.encode_name(long)
    assert str(caught.value) == f"{long!r} is over 255 octets"
