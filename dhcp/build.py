"""One builder per message a client sends: the fields and options of RFC 2131 table 5.

The client's machine and the sweeper's RELEASE for a dead job's lease both
build here, so a message of one kind always looks the same on the wire.
"""

from __future__ import annotations

import ipaddress
import struct

from . import options as opt
from .config import Config
from .message import BOOTREQUEST, BROADCAST_FLAG, ZERO, Message

MT = opt.MessageType


def _asking(
    config: Config,
    kind: MT,
    xid: int,
    secs: float,
    extra: dict[int, bytes] | None = None,
    ciaddr: ipaddress.IPv4Address = ZERO,
) -> Message:
    """DISCOVER and REQUEST: they carry what the client asks for and says about itself."""
    o = {
        opt.MESSAGE_TYPE: bytes([kind]),
        opt.CLIENT_ID: config.client_id,
        opt.PARAMETER_REQUEST_LIST: bytes(config.requested),
        opt.MAX_MESSAGE_SIZE: struct.pack("!H", config.max_message_size),
        opt.VENDOR_CLASS_ID: config.vendor_class,
    }
    if config.hostname:
        o[opt.HOSTNAME] = config.hostname.encode()
    o.update(extra or {})
    return Message(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=config.chaddr,
        options=o,
        ciaddr=ciaddr,
        secs=min(int(secs), 0xFFFF),
        # only a client without an address may ask for broadcast replies (section 4.1)
        flags=BROADCAST_FLAG if config.broadcast_flag and ciaddr == ZERO else 0,
    )


def discover(config: Config, xid: int, secs: float) -> Message:
    return _asking(config, MT.DISCOVER, xid, secs)


def request_offer(
    config: Config,
    xid: int,
    secs: float,
    address: ipaddress.IPv4Address,
    server: ipaddress.IPv4Address,
) -> Message:
    """SELECTING: the offer's address and its server (both MUST), ciaddr 0."""
    extra = {opt.REQUESTED_ADDRESS: address.packed, opt.SERVER_ID: server.packed}
    return _asking(config, MT.REQUEST, xid, secs, extra=extra)


def request_reboot(
    config: Config, xid: int, secs: float, address: ipaddress.IPv4Address
) -> Message:
    """INIT-REBOOT: the remembered address (MUST), no server identifier (MUST NOT)."""
    return _asking(config, MT.REQUEST, xid, secs, extra={opt.REQUESTED_ADDRESS: address.packed})


def request_extend(
    config: Config, xid: int, secs: float, address: ipaddress.IPv4Address
) -> Message:
    """RENEWING and REBINDING: the address in ciaddr, neither option 50 nor 54 (MUST NOT)."""
    return _asking(config, MT.REQUEST, xid, secs, ciaddr=address)


def decline(
    chaddr: bytes,
    client_id: bytes,
    xid: int,
    address: ipaddress.IPv4Address,
    server: ipaddress.IPv4Address,
) -> Message:
    """The address (option 50) and its server (54), ciaddr 0, nothing asked for."""
    return Message(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=chaddr,
        options={
            opt.MESSAGE_TYPE: bytes([MT.DECLINE]),
            opt.CLIENT_ID: client_id,
            opt.REQUESTED_ADDRESS: address.packed,
            opt.SERVER_ID: server.packed,
        },
    )


def release(
    chaddr: bytes,
    client_id: bytes,
    xid: int,
    address: ipaddress.IPv4Address,
    server: ipaddress.IPv4Address,
) -> Message:
    """The address in ciaddr and its server (54); no option 50 (MUST NOT)."""
    return Message(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=chaddr,
        ciaddr=address,
        options={
            opt.MESSAGE_TYPE: bytes([MT.RELEASE]),
            opt.CLIENT_ID: client_id,
            opt.SERVER_ID: server.packed,
        },
    )
