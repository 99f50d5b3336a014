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


def test_dhcpv6_release_goes_into_the_bridge_as_the_job_would_send_it():
    from dhcp6 import MessageType, decode
    from dhcp6 import frame as frame6
    from dhcp6 import options as opt6
    from lark_async.backends.lan.job_lease6 import release_frame

    details = {
        "bridge": "lark",
        "mac": "02:00:00:00:00:07",
        "link_local": "fe80::ff:fe00:7",
        "duid": "00030001020000000007",
        "iaid": 7,
        "server": "000200000009bf01",
        "addresses": ["fd77::100", "fd77::101"],
    }
    data, bridge = release_frame(details)
    assert bridge == "lark"
    assert data[:6] == bytes.fromhex("333300010002") and data[6:12] == bytes.fromhex("020000000007")
    assert data[22:38] == ipaddress.IPv6Address("fe80::ff:fe00:7").packed
    assert data[38:54] == ipaddress.IPv6Address("ff02::1:2").packed
    payload = frame6.parse_udp(data, dst_port=547)
    assert payload is not None
    msg = decode(payload)
    assert msg.msg_type is MessageType.RELEASE
    assert msg.get(opt6.ClientId) == opt6.ClientId(bytes.fromhex("00030001020000000007"))
    assert msg.get(opt6.ServerId) == opt6.ServerId(bytes.fromhex("000200000009bf01"))
    ia = msg.get(opt6.IaNa)
    assert ia is not None and ia.iaid == 7
    assert [a.address for a in ia.options if isinstance(a, opt6.IaAddress)] == [
        ipaddress.IPv6Address("fd77::100"),
        ipaddress.IPv6Address("fd77::101"),
    ]
