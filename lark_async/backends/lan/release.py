"""RELEASE the DHCP lease of a bridged job whose agent died, from its record alone.

The job's namespace may be gone, so the RELEASE is sent from the host: a raw
IP datagram carrying the job's own leased address as its source, routed by the
host onto the LAN, so a server that checks the source (dnsmasq) honours it.
"""

from __future__ import annotations

import ipaddress
import random
import socket

from dhcp import build
from dhcp.frame import build_udp
from dhcp.message import encode


def release_message(details: dict) -> tuple[bytes, ipaddress.IPv4Address]:
    """(IPv4 datagram, server) for the lease the record's ``dhcp`` step describes."""
    address = ipaddress.IPv4Address(details["address"])
    server = ipaddress.IPv4Address(details["server"])
    mac = bytes.fromhex(str(details["mac"]).replace(":", ""))
    client_id = bytes.fromhex(str(details["client_id"]))
    message = build.release(mac, client_id, random.getrandbits(32), address, server)
    frame = build_udp(encode(message), mac, address, server)
    return frame[14:], server  # without the Ethernet header: the host's routing adds one


def send_release(details: dict) -> None:
    datagram, server = release_message(details)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(datagram, (str(server), 0))
