"""dhcp/options.py at its edges: each boundary, each error a peer can cause, each message.

test_message.py runs the option codec through whole messages; here each function is held to
its exact contract, so that an off-by-one or a swapped test in it fails a test.
"""

from __future__ import annotations

import ipaddress

import pytest

from dhcp import options as opt
from dhcp.errors import MalformedMessage

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
MAC = bytes.fromhex("02aabbccddee")
RAPID_COMMIT = 80  # RFC 4039: an option with no value


def area(data: bytes, where: str = "options") -> dict[int, bytes]:
    into: dict[int, bytes] = {}
    opt.decode_area(data, into, where)
    return into


# -- decode_area ----------------------------------------------------------------------


def test_pad_is_skipped_one_byte_at_a_time():
    assert area(bytes([0, 53, 1, 5, 0, 0, 54, 4]) + IP("10.0.0.1").packed + b"\xff") == {
        53: b"\x05",
        54: IP("10.0.0.1").packed,
    }


def test_options_after_pad_are_read_and_end_stops():
    assert area(bytes([0, 12, 1]) + b"h" + b"\xff" + bytes([15, 1]) + b"d") == {12: b"h"}


def test_an_option_that_exactly_fills_the_area_needs_no_end():
    assert area(bytes([12, 2]) + b"ab") == {12: b"ab"}
    assert area(bytes([53, 1, 5, 12, 2]) + b"ab") == {53: b"\x05", 12: b"ab"}


def test_a_zero_length_option_last_in_the_area_is_read():
    assert area(bytes([53, 1, 5, RAPID_COMMIT, 0])) == {53: b"\x05", RAPID_COMMIT: b""}


def test_a_code_as_the_last_byte_has_no_length():
    with pytest.raises(MalformedMessage) as exc:
        area(bytes([53, 1, 5, 12]), "file")
    assert str(exc.value) == "option 12 in file has no length"


@pytest.mark.parametrize("short_by", [1, 2, 3, 4, 5])
def test_a_length_past_the_end_by_any_amount_is_malformed(short_by):
    data = bytes([53, 1, 5, 12, 6]) + b"x" * (6 - short_by)
    with pytest.raises(MalformedMessage) as exc:
        area(data, "sname")
    assert str(exc.value) == "option 12 in sname runs past the end"


def test_repeated_codes_are_concatenated_in_order():
    assert area(bytes([12, 2]) + b"ab" + bytes([15, 1]) + b"d" + bytes([12, 1]) + b"c") == {
        12: b"abc",
        15: b"d",
    }


def test_decode_area_adds_to_what_is_there():
    into = {12: b"ab"}
    opt.decode_area(bytes([12, 1]) + b"c", into, "file")
    assert into == {12: b"abc"}


# -- encode_options ---------------------------------------------------------------------


def test_encode_keeps_the_given_order_and_ends_with_end():
    assert opt.encode_options([(54, b"\1\2\3\4"), (53, b"\5")]) == bytes(
        [54, 4, 1, 2, 3, 4, 53, 1, 5, 255]
    )


def test_a_zero_length_option_is_encoded_with_length_zero():
    assert opt.encode_options([(RAPID_COMMIT, b"")]) == bytes([RAPID_COMMIT, 0, 255])
    assert opt.encode_options([(53, b"\5"), (RAPID_COMMIT, b""), (12, b"h")]) == bytes(
        [53, 1, 5, RAPID_COMMIT, 0, 12, 1, ord("h"), 255]
    )


@pytest.mark.parametrize(("size", "pieces"), [(255, [255]), (256, [255, 1]), (510, [255, 255])])
def test_long_values_are_cut_at_255_bytes(size, pieces):
    wire = opt.encode_options([(61, b"v" * size)])
    lengths, i = [], 0
    while wire[i] != opt.END:
        assert wire[i] == 61
        lengths.append(wire[i + 1])
        i += 2 + wire[i + 1]
    assert lengths == pieces and i == len(wire) - 1


@pytest.mark.parametrize("code", [opt.PAD, opt.END])
def test_pad_and_end_cannot_carry_a_value(code):
    with pytest.raises(ValueError) as exc:
        opt.encode_options([(code, b"x")])
    assert str(exc.value) == f"option {code} cannot carry a value"


# -- typed views ----------------------------------------------------------------------


def test_u32_and_u16_are_big_endian():
    assert opt.u32(b"\x00\x01\x51\x80", 51) == 86400
    assert opt.u32(b"\xff\xff\xff\xff", 51) == 0xFFFFFFFF
    assert opt.u16(b"\x05\xdc", 26) == 1500
    assert opt.u16(b"\x01\x00", 57) == 256


@pytest.mark.parametrize("value", [b"", b"\0\0\0", b"\0\0\0\0\0"])
def test_u32_names_the_option_and_the_length(value):
    with pytest.raises(MalformedMessage) as exc:
        opt.u32(value, 51)
    assert str(exc.value) == f"option 51 must be 4 bytes, not {len(value)}"


@pytest.mark.parametrize("value", [b"", b"\0", b"\0\0\0"])
def test_u16_names_the_option_and_the_length(value):
    with pytest.raises(MalformedMessage) as exc:
        opt.u16(value, 26)
    assert str(exc.value) == f"option 26 must be 2 bytes, not {len(value)}"


def test_address_is_exactly_four_bytes():
    assert opt.address(b"\x0a\x4d\x00\x01", 54) == IP("10.77.0.1")
    for value in (b"\0\0\0", b"\0\0\0\0\0"):
        with pytest.raises(MalformedMessage) as exc:
            opt.address(value, 54)
        assert str(exc.value) == f"option 54 must be one address, not {len(value)} bytes"


@pytest.mark.parametrize("value", [b"", b"\1\1\1", b"\1\1\1\1\2"])
def test_addresses_are_one_or_more_whole_addresses(value):
    with pytest.raises(MalformedMessage) as exc:
        opt.addresses(value, 6)
    assert str(exc.value) == "option 6 must be a list of addresses"
    assert opt.addresses(b"\1\1\1\1", 6) == (IP("1.1.1.1"),)


def test_text_stops_at_the_first_nul():
    assert opt.text(b"node\0a\0b") == "node"
    assert opt.text(b"\0node") == ""
    assert opt.text(b"node") == "node"


# -- classless routes (RFC 3442) ---------------------------------------------------------


def test_every_width_from_0_to_32_round_trips():
    gateway = IP("10.77.0.1")
    routes = tuple(
        (NET((0x0A4D1234 >> (32 - w) << (32 - w) if w else 0, w)), gateway) for w in range(33)
    )
    wire = opt.encode_classless_routes(routes)
    assert opt.classless_routes(wire) == routes
    # a /32 host route: the width, all four octets, the router
    assert opt.encode_classless_routes([(NET("10.77.0.9/32"), gateway)]) == bytes(
        [32, 10, 77, 0, 9, 10, 77, 0, 1]
    )


def test_only_the_significant_octets_of_the_destination_are_sent():
    gateway = IP("10.0.0.1")
    assert opt.encode_classless_routes([(NET("0.0.0.0/0"), gateway)]) == bytes([0, 10, 0, 0, 1])
    assert opt.encode_classless_routes([(NET("10.0.0.0/8"), gateway)]) == bytes(
        [8, 10, 10, 0, 0, 1]
    )
    assert opt.encode_classless_routes([(NET("10.128.0.0/9"), gateway)]) == bytes(
        [9, 10, 128, 10, 0, 0, 1]
    )


def test_a_route_cut_short_names_option_121():
    with pytest.raises(MalformedMessage) as exc:
        opt.classless_routes(bytes([24, 10, 1, 2, 10, 0, 0]))
    assert str(exc.value) == "classless route runs past the end of option 121"


def test_a_width_over_32_is_named():
    with pytest.raises(MalformedMessage) as exc:
        opt.classless_routes(bytes([33, 10, 0, 0, 0, 0, 10, 0, 0, 1]))
    assert str(exc.value) == "classless route width 33 is over 32"


# -- identities -------------------------------------------------------------------------


def test_duid_ll_is_type_3_hardware_1_then_the_mac():
    assert opt.duid_ll(MAC) == b"\x00\x03\x00\x01" + MAC


@pytest.mark.parametrize("iaid", [0, 1, 2**31, 2**32 - 1])
def test_any_32_bit_iaid_is_accepted_big_endian(iaid):
    cid = opt.client_id(iaid, b"abc")
    assert cid == b"\xff" + iaid.to_bytes(4, "big") + b"abc"


@pytest.mark.parametrize("duid_len", [3, 130])
def test_duids_of_3_to_130_bytes_are_accepted(duid_len):
    assert opt.client_id(1, b"d" * duid_len)[5:] == b"d" * duid_len


@pytest.mark.parametrize(
    ("iaid", "duid_len"), [(-1, 10), (2**32, 10), (2**33, 10), (1, 2), (1, 131), (-1, 2)]
)
def test_an_iaid_over_32_bits_or_a_duid_outside_3_to_130_bytes_is_refused(iaid, duid_len):
    with pytest.raises(ValueError) as exc:
        opt.client_id(iaid, b"d" * duid_len)
    assert str(exc.value) == "IAID must be 32 bits and the DUID 3-130 bytes"
