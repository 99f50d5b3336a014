"""A minimal rtnetlink request channel for the setup fast path.

Setup needs five message kinds and only acks back, so we encode them with
``struct`` and send a whole batch in one ``send``: the kernel processes every
message of a buffer in order and acks each. This keeps pyroute2's 140 ms
import off the job's start-up path; the watch task parses events with
pyroute2 (watch.py).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RTPROT_DHCP, RTN_UNICAST = 254, 3, 16, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
SIOCGIFINDEX = 0x8933

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _ifname(name: str) -> bytes:
    return _attr(IFLA_IFNAME, name.encode() + b"\0")


def _ifinfo(index: int = 0, up: bool = False) -> bytes:
    flags = IFF_UP if up else 0
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, IFF_UP if up else 0)


@dataclass(frozen=True)
class Message:
    """One request: kind, flags and body; the channel numbers and frames it."""

    kind: int
    flags: int
    body: bytes
    what: str


def new_veth(name: str, peer: str, peer_netns_fd: int) -> Message:
    """The host end is created up (the peer cannot be: veth_open refuses before the pair is
    linked, ENOTCONN), the peer directly inside the job's netns (no move, no RCU wait)."""
    peer_body = _ifinfo() + _ifname(peer) + _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
    info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(
        IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_body)
    )
    body = _ifinfo(up=True) + _ifname(name) + _attr(IFLA_LINKINFO, info)
    return Message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth {name}/{peer}")


def set_up(index: int, what: str) -> Message:
    return Message(RTM_NEWLINK, 0, _ifinfo(index, up=True), f"bring up {what}")


def set_master(index: int, master: int, what: str) -> Message:
    """Enslave a link (to a bridge) and bring it up."""
    body = _ifinfo(index, up=True) + _attr(IFLA_MASTER, struct.pack("=I", master))
    return Message(RTM_NEWLINK, 0, body, f"attach {what}")


def del_link(name: str) -> Message:
    return Message(RTM_DELLINK, 0, _ifinfo() + _ifname(name), f"delete link {name}")


def new_peer_address(
    index: int, local: ipaddress.IPv4Address, peer: ipaddress.IPv4Address, what: str
) -> Message:
    """A /32 with a peer: each job is a point-to-point link, no shared subnet route."""
    body = (
        _IFADDRMSG.pack(socket.AF_INET, 32, 0, 0, index)
        + _attr(IFA_LOCAL, local.packed)
        + _attr(IFA_ADDRESS, peer.packed)
    )
    return Message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {local} to {what}")


def new_default_route(gateway: ipaddress.IPv4Address, index: int) -> Message:
    return route(RTM_NEWROUTE, ipaddress.IPv4Network("0.0.0.0/0"), gateway, index, RTPROT_BOOT)


def address(kind: int, index: int, iface: ipaddress.IPv4Interface, what: str) -> Message:
    """Add (RTM_NEWADDR) or remove (RTM_DELADDR) an address with its prefix, as on a LAN."""
    body = _IFADDRMSG.pack(socket.AF_INET, iface.network.prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, iface.ip.packed) + _attr(IFA_ADDRESS, iface.ip.packed)
    if iface.network.prefixlen < 31:
        body += _attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
    verb, flags = ("add", NLM_F_CREATE | NLM_F_EXCL) if kind == RTM_NEWADDR else ("remove", 0)
    return Message(kind, flags, body, f"{verb} address {iface} on {what}")


def route(
    kind: int,
    dest: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address | None,
    index: int,
    protocol: int = RTPROT_DHCP,
) -> Message:
    """Add (RTM_NEWROUTE) or remove (RTM_DELROUTE) a route; no gateway: on-link."""
    scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
    body = _RTMSG.pack(
        socket.AF_INET, dest.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, scope, RTN_UNICAST, 0
    )
    if dest.prefixlen:
        body += _attr(RTA_DST, dest.network_address.packed)
    if gateway is not None:
        body += _attr(RTA_GATEWAY, gateway.packed)
    body += _attr(RTA_OIF, struct.pack("=i", index))
    name = "default route" if not dest.prefixlen else f"route to {dest}"
    name += f" via {gateway}" if gateway is not None else ""
    if kind == RTM_NEWROUTE:
        return Message(kind, NLM_F_CREATE | NLM_F_EXCL, body, f"add {name}")
    return Message(kind, 0, body, f"remove {name}")


class RequestError(OSError):
    """A request the kernel refused; ``what`` names the verb and object."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(err, os.strerror(err))
        self.what = what


class Channel:
    """A blocking NETLINK_ROUTE socket in the namespace where it was opened."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._seq = 0

    def close(self) -> None:
        self.sock.close()
        self._ioctl.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def index(self, name: str) -> int:
        """Interface index in this channel's namespace (SIOCGIFINDEX; no netlink dump)."""
        req = struct.pack("16si", name.encode(), 0)
        return struct.unpack("16si", fcntl.ioctl(self._ioctl, SIOCGIFINDEX, req))[1]

    def request(self, *messages: Message, absent_ok: bool = False) -> None:
        """Send all messages in one buffer and wait for every ack; raise the first refusal.

        With ``absent_ok``, ENODEV/ENOENT/ESRCH/EADDRNOTAVAIL count as done (idempotent delete).
        """
        frames, pending = [], {}
        for msg in messages:
            self._seq += 1
            pending[self._seq] = msg
            flags = NLM_F_REQUEST | NLM_F_ACK | msg.flags
            frames.append(
                _NLMSGHDR.pack(_NLMSGHDR.size + len(msg.body), msg.kind, flags, self._seq, 0)
            )
            frames.append(msg.body)
        self.sock.send(b"".join(frames))
        first_error: RequestError | None = None
        while pending:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if kind == NLMSG_ERROR and seq in pending:
                    (err,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    msg = pending.pop(seq)
                    absent = -err in (19, 2, 3, 99)  # ENODEV ENOENT ESRCH EADDRNOTAVAIL
                    if err and not (absent_ok and absent) and first_error is None:
                        first_error = RequestError(-err, msg.what)
                offset += max(length + (-length % 4), _NLMSGHDR.size)
        if first_error is not None:
            raise first_error
