"""Each message the client sends, field by field and option by option (RFC 2131 table 5).

Every message is checked as it goes on the wire (encoded, then decoded), so a field the
builder left unset or an option it added by mistake shows up as the server would see it.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from dhcp import build
from dhcp import options as opt
from dhcp.config import Config
from dhcp.message import BOOTREQUEST, ZERO, Message, decode, encode

IP = ipaddress.IPv4Address
MT = opt.MessageType
MAC = bytes.fromhex("02aabbccddee")
CID = opt.client_id(7, opt.duid_ll(MAC))
ADDR, SERVER = IP("10.77.0.50"), IP("10.77.0.1")
CONFIG = Config(chaddr=MAC, client_id=CID)
# what DISCOVER and REQUEST say of the client in every state (RFC 2131 table 5: MAY)
ASKING = {
    opt.CLIENT_ID: CID,
    opt.PARAMETER_REQUEST_LIST: bytes([1, 3, 6, 12, 15, 26, 51, 54, 58, 59, 121]),
    opt.MAX_MESSAGE_SIZE: struct.pack("!H", 1500),
    opt.VENDOR_CLASS_ID: b"lark",
}


def on_the_wire(msg: Message) -> Message:
    return decode(encode(msg))


def expected(kind: MT, xid: int, options: dict[int, bytes], **fields) -> Message:
    """A client message: op BOOTREQUEST, hops 0, yiaddr/siaddr/giaddr 0, no sname or file."""
    o = {opt.MESSAGE_TYPE: bytes([kind]), **options}
    return Message(op=BOOTREQUEST, xid=xid, chaddr=MAC, options=o, **fields)


def test_discover():
    msg = on_the_wire(build.discover(CONFIG, xid=0x1234, secs=3.7))
    assert msg == expected(MT.DISCOVER, 0x1234, ASKING, secs=3)
    assert (msg.htype, len(msg.chaddr), msg.hops, msg.flags) == (1, 6, 0, 0)
    assert opt.SERVER_ID not in msg.options and opt.REQUESTED_ADDRESS not in msg.options


def test_request_in_selecting_names_the_offer_and_its_server():
    msg = on_the_wire(build.request_offer(CONFIG, 9, 4.0, ADDR, SERVER))
    extra = {opt.REQUESTED_ADDRESS: ADDR.packed, opt.SERVER_ID: SERVER.packed}
    assert msg == expected(MT.REQUEST, 9, {**ASKING, **extra}, secs=4, ciaddr=ZERO)


def test_request_in_init_reboot_names_the_address_and_no_server():
    msg = on_the_wire(build.request_reboot(CONFIG, 9, 0.0, ADDR))
    assert msg == expected(MT.REQUEST, 9, {**ASKING, opt.REQUESTED_ADDRESS: ADDR.packed})
    assert opt.SERVER_ID not in msg.options


def test_request_when_renewing_puts_the_address_in_ciaddr_only():
    msg = on_the_wire(build.request_extend(CONFIG, 9, 2.0, ADDR))
    assert msg == expected(MT.REQUEST, 9, ASKING, secs=2, ciaddr=ADDR)


def test_the_hostname_is_sent_when_configured():
    config = Config(chaddr=MAC, client_id=CID, hostname="node-7", vendor_class=b"v")
    for msg in (build.discover(config, 1, 0), build.request_extend(config, 1, 0, ADDR)):
        sent = on_the_wire(msg)
        assert sent.options[opt.HOSTNAME] == b"node-7"
        assert sent.options[opt.VENDOR_CLASS_ID] == b"v"


def test_what_the_client_asks_for_comes_from_its_config():
    config = Config(chaddr=MAC, client_id=b"\1id", requested=(1, 121), max_message_size=576)
    msg = on_the_wire(build.discover(config, 1, 0))
    assert msg.options[opt.PARAMETER_REQUEST_LIST] == bytes([1, 121])
    assert msg.options[opt.MAX_MESSAGE_SIZE] == bytes([2, 64])
    assert msg.options[opt.CLIENT_ID] == b"\1id"


def test_the_maximum_message_size_is_an_unsigned_16_bit_count_rfc2132_9_10():
    config = Config(chaddr=MAC, client_id=CID, max_message_size=65535)
    assert on_the_wire(build.discover(config, 1, 0)).options[opt.MAX_MESSAGE_SIZE] == b"\xff\xff"


@pytest.mark.parametrize(("secs", "field"), [(0.99, 0), (65535.5, 65535), (1e9, 65535)])
def test_secs_is_whole_seconds_and_saturates_at_16_bits(secs, field):
    assert on_the_wire(build.discover(CONFIG, 1, secs)).secs == field


def test_the_broadcast_flag_only_from_a_client_without_an_address():
    config = Config(chaddr=MAC, client_id=CID, broadcast_flag=True)
    assert on_the_wire(build.discover(config, 1, 0)).flags == 0x8000
    assert on_the_wire(build.request_offer(config, 1, 0, ADDR, SERVER)).flags == 0x8000
    assert on_the_wire(build.request_reboot(config, 1, 0, ADDR)).flags == 0x8000
    assert on_the_wire(build.request_extend(config, 1, 0, ADDR)).flags == 0  # RFC 2131 4.1
    assert on_the_wire(build.request_offer(CONFIG, 1, 0, ADDR, SERVER)).flags == 0


def test_decline_names_the_address_and_its_server_and_asks_for_nothing():
    msg = on_the_wire(build.decline(MAC, CID, 77, ADDR, SERVER))
    options = {opt.CLIENT_ID: CID, opt.REQUESTED_ADDRESS: ADDR.packed, opt.SERVER_ID: SERVER.packed}
    assert msg == expected(MT.DECLINE, 77, options)  # ciaddr, secs and flags 0


def test_release_puts_the_address_in_ciaddr_and_names_its_server():
    msg = on_the_wire(build.release(MAC, CID, 78, ADDR, SERVER))
    options = {opt.CLIENT_ID: CID, opt.SERVER_ID: SERVER.packed}
    assert msg == expected(MT.RELEASE, 78, options, ciaddr=ADDR)  # no option 50
