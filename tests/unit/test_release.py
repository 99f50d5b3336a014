"""The sweeper's RELEASE for a dead bridged job: from the job's address, as the job's client."""

from __future__ import annotations

import ipaddress

from dhcp import options as opt
from dhcp.frame import parse_udp
from dhcp.message import decode
from lark_async.backends.lan.release import release_message


def test_release_comes_from_the_leased_address_with_the_jobs_identity():
    details = {
        "address": "10.77.0.120",
        "server": "10.77.0.1",
        "mac": "02:00:00:00:00:07",
        "client_id": "ff0102030400030001020000000007",
    }
    datagram, server = release_message(details)
    assert server == ipaddress.IPv4Address("10.77.0.1")
    assert datagram[12:16] == ipaddress.IPv4Address("10.77.0.120").packed  # IP source
    frame = b"\xff" * 6 + bytes.fromhex("020000000007") + b"\x08\x00" + datagram
    message = decode(parse_udp(frame, dst_port=67))  # to the server, checksums valid
    assert message.options[opt.MESSAGE_TYPE] == bytes([opt.MessageType.RELEASE])
    assert str(message.ciaddr) == "10.77.0.120" and message.chaddr == bytes.fromhex("020000000007")
    assert message.options[opt.CLIENT_ID].hex() == details["client_id"]
    assert message.options[opt.SERVER_ID] == server.packed
