"""rtnetlink: the link, address, route and neighbour requests of setup, and links parsed.

Setup needs a handful of message kinds and only acks back, so we encode them
with ``struct`` and send a whole batch in one ``send``: the kernel processes
every message of a buffer in order and acks each (framing, acks and errors:
core.py). This keeps pyroute2's import off the job's start-up path; the watch
task parses events with pyroute2 (watch.py).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass, field

from .core import (
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NetlinkError,
    Request,
    Socket,
    attr,
    parse_attrs,
)

__all__ = ["NLM_F_APPEND", "NLM_F_CREATE", "NLM_F_EXCL", "NLM_F_REPLACE", "parse_attrs"]

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
RTM_GETNEXTHOP = 106
IFLA_MTU, IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE = 4, 26, 8
IFLA_INET6_FLAGS, IF_RA_MANAGED = 1, 0x40  # (linux/if_link.h, net/if_inet6.h)
IN6_ADDR_GEN_MODE_NONE = 1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_OPERSTATE = 1, 3, 10, 16
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE = 1, 5
IFLA_BRPORT_STATE, BR_STATE_FORWARDING = 1, 3
IFLA_BRPORT_MODE, IFLA_BRPORT_GUARD, IFLA_BRPORT_LEARNING, IFLA_BRPORT_UNICAST_FLOOD = 4, 5, 8, 9
IFLA_BRPORT_LOCKED = 39  # Linux 5.18
IFLA_BR_VLAN_FILTERING, IFLA_BR_VLAN_DEFAULT_PVID = 7, 39
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
AF_BRIDGE, NDA_LLADDR, NDA_VLAN = 7, 2, 5
NUD_NOARP, NTF_MASTER, NTF_STICKY = 0x40, 0x04, 0x40
NDA_DST, NUD_PERMANENT, NTF_PROXY = 1, 0x80, 0x08
IF_OPER_UNKNOWN, IF_OPER_UP = 0, 6
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
IFF_UP, IFF_RUNNING = 0x1, 0x40  # (linux/if.h)
RT_TABLE_MAIN, RTPROT_KERNEL, RTPROT_BOOT, RTPROT_DHCP, RTN_UNICAST = 254, 2, 3, 16, 1
RTN_LOCAL = 2
RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
SIOCGIFINDEX = 0x8933
# what a delete may find already gone: a link, a route or rule, a neighbour, an address
ABSENT = frozenset({errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL})

_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BBHiHBB")
_NHMSG = struct.Struct("=BBBBI")


def _ifname(name: str) -> bytes:
    return attr(IFLA_IFNAME, name.encode() + b"\0")


def ifinfo(index: int = 0, up: bool = False) -> bytes:
    """The ifinfomsg every link request starts with; ``up`` sets IFF_UP and marks it changed."""
    flags = IFF_UP if up else 0
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags)


Message = Request  # an rtnetlink request: kind, flags, body and what it does


def new_veth(name: str, peer: str, peer_netns_fd: int, mtu: int | None = None) -> Message:
    """The host end is created up (the peer cannot be: veth_open refuses before the pair is
    linked, ENOTCONN), the peer directly inside the job's netns (no move, no RCU wait).
    ``mtu`` (both ends): the job's frames are as large as its network's (None: 1500)."""
    size = attr(IFLA_MTU, struct.pack("=I", mtu)) if mtu is not None else b""
    peer_body = (
        ifinfo() + _ifname(peer) + attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd)) + size
    )
    info = attr(IFLA_INFO_KIND, b"veth\0") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_body))
    body = ifinfo(up=True) + _ifname(name) + size + attr(IFLA_LINKINFO, info)
    return Message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth {name}/{peer}")


def set_up(index: int, what: str) -> Message:
    return Message(RTM_NEWLINK, 0, ifinfo(index, up=True), f"bring up {what}")


def set_master(index: int, master: int, what: str) -> Message:
    """Enslave a link (to a bridge) and bring it up; master 0 releases it (and leaves it up)."""
    body = ifinfo(index, up=True) + attr(IFLA_MASTER, struct.pack("=I", master))
    return Message(RTM_NEWLINK, 0, body, f"attach {what}" if master else f"release {what}")


def set_addr_gen_mode(index: int, mode: int, what: str) -> Message:
    """How the kernel makes a link's IPv6 link-local (IFLA_INET6_ADDR_GEN_MODE: eui64,
    none, stable privacy, random); a change takes effect at the link's next up."""
    inet6 = attr(IFLA_INET6_ADDR_GEN_MODE, struct.pack("=B", mode))
    body = ifinfo(index) + attr(IFLA_AF_SPEC, attr(socket.AF_INET6, inet6))
    return Message(RTM_NEWLINK, 0, body, f"set the IPv6 address generation mode of {what}")


def set_port_flags(index: int, flags: dict[int, int], what: str) -> Message:
    """Bridge port options (IFLA_BRPORT_*, each one byte) of an enslaved link, as
    ``ip link set DEV type bridge_slave ...`` sets them. A kernel that does not know an
    option ignores it: read the link back to see what took."""
    data = b"".join(attr(kind, struct.pack("=B", value)) for kind, value in flags.items())
    info = attr(IFLA_INFO_SLAVE_KIND, b"bridge\0") + attr(IFLA_INFO_SLAVE_DATA, data)
    body = ifinfo(index) + attr(IFLA_LINKINFO, info)
    return Message(RTM_NEWLINK, 0, body, f"set bridge port options of {what}")


def static_fdb(index: int, mac: bytes, vid: int | None, sticky: bool, what: str) -> Message:
    """A static entry in the bridge's forwarding table: ``mac`` lives behind port ``index``
    (``bridge fdb replace MAC dev PORT master static [sticky] [vlan VID]``). Static, not
    permanent: a permanent entry would make the bridge keep the frames for itself. Sticky:
    a frame with this source arriving on another port does not move it there."""
    flags = NTF_MASTER | (NTF_STICKY if sticky else 0)
    body = _NDMSG.pack(AF_BRIDGE, 0, 0, index, NUD_NOARP, flags, 0) + attr(NDA_LLADDR, mac)
    if vid is not None:
        body += attr(NDA_VLAN, struct.pack("=H", vid))
    return Message(
        RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, f"pin {mac.hex(':')} to {what}"
    )


def proxy_neighbour(kind: int, index: int, addr: ipaddress.IPv6Address, what: str) -> Message:
    """Add (RTM_NEWNEIGH) or remove (RTM_DELNEIGH) a proxy NDP entry: the node answers
    neighbour solicitations for ``addr`` on link ``index`` (``ip -6 neigh add proxy``)."""
    body = _NDMSG.pack(socket.AF_INET6, 0, 0, index, NUD_PERMANENT, NTF_PROXY, 0)
    body += attr(NDA_DST, addr.packed)
    if kind == RTM_NEWNEIGH:
        return Message(kind, NLM_F_CREATE | NLM_F_REPLACE, body, f"proxy {addr} on {what}")
    return Message(kind, 0, body, f"remove the proxy of {addr} on {what}")


def del_link(name: str) -> Message:
    return Message(RTM_DELLINK, 0, ifinfo() + _ifname(name), f"delete link {name}")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IFA_FLAGS, IFA_F_NODAD = 8, 0x02


def new_peer_address(index: int, local: IPAddress, peer: IPAddress, what: str) -> Message:
    """A /32 (IPv6: /128) with a peer: each job is a point-to-point link, no shared subnet
    route. An IPv6 one without duplicate address detection: the pair is Lark's own, locked,
    so the job's IPv6 costs no wait (DAD would hold it tentative for a second)."""
    v6 = local.version == 6
    body = (
        _IFADDRMSG.pack(socket.AF_INET6 if v6 else socket.AF_INET, 128 if v6 else 32, 0, 0, index)
        + attr(IFA_LOCAL, local.packed)
        + attr(IFA_ADDRESS, peer.packed)
    )
    if v6:
        body += attr(IFA_FLAGS, struct.pack("=I", IFA_F_NODAD))
    return Message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {local} to {what}")


def new_default_route(gateway: IPAddress, index: int) -> Message:
    """IPv4 via the peer of the link's /32; IPv6 ``onlink``: the route to the /128 peer
    comes with the address only once its (skipped) DAD completes, on a kernel work queue."""
    if gateway.version == 6:
        anywhere = ipaddress.IPv6Network("::/0")
        return route(RTM_NEWROUTE, anywhere, gateway, index, RTPROT_BOOT, RTNH_F_ONLINK)
    return route(RTM_NEWROUTE, ipaddress.IPv4Network("0.0.0.0/0"), gateway, index, RTPROT_BOOT)


def address(kind: int, index: int, iface: ipaddress.IPv4Interface, what: str) -> Message:
    """Add (RTM_NEWADDR) or remove (RTM_DELADDR) an address with its prefix, as on a LAN."""
    body = _IFADDRMSG.pack(socket.AF_INET, iface.network.prefixlen, 0, 0, index)
    body += attr(IFA_LOCAL, iface.ip.packed) + attr(IFA_ADDRESS, iface.ip.packed)
    if iface.network.prefixlen < 31:
        body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
    verb, flags = ("add", NLM_F_CREATE | NLM_F_EXCL) if kind == RTM_NEWADDR else ("remove", 0)
    return Message(kind, flags, body, f"{verb} address {iface} on {what}")


IFA_CACHEINFO, IFA_F_OPTIMISTIC, IFA_F_NOPREFIXROUTE = 6, 0x04, 0x200
FOREVER = 0xFFFFFFFF


def _lifetime(seconds: float) -> int:
    return FOREVER if seconds == float("inf") else max(0, min(int(seconds), FOREVER - 1))


def leased_address6(
    kind: int,
    index: int,
    addr: ipaddress.IPv6Address,
    preferred_s: float,
    valid_s: float,
    what: str,
) -> Message:
    """Put (RTM_NEWADDR: added, or its lifetimes renewed) or remove a DHCPv6-leased /128
    (RFC 8415 section 18.2.10.1: the lease says nothing of prefixes; the routers' RAs do).
    Its lifetimes are the lease's, so the kernel drops it when the lease runs out even if
    the agent is gone; optimistic DAD (RFC 4429) makes it usable at once, and a conflict
    still shows as ``dadfailed``, for the client to DECLINE."""
    body = _IFADDRMSG.pack(socket.AF_INET6, 128, 0, 0, index) + attr(IFA_LOCAL, addr.packed)
    if kind == RTM_DELADDR:
        return Message(kind, 0, body, f"remove address {addr} from {what}")
    body += attr(IFA_FLAGS, struct.pack("=I", IFA_F_OPTIMISTIC | IFA_F_NOPREFIXROUTE))
    times = (_lifetime(min(preferred_s, valid_s)), _lifetime(valid_s), 0, 0)
    body += attr(IFA_CACHEINFO, struct.pack("=IIII", *times))
    return Message(kind, NLM_F_CREATE | NLM_F_REPLACE, body, f"add address {addr} to {what}")


def route(
    kind: int,
    dest: ipaddress.IPv4Network | ipaddress.IPv6Network,
    gateway: IPAddress | None,
    index: int,
    protocol: int = RTPROT_DHCP,
    flags: int = 0,
) -> Message:
    """Add (RTM_NEWROUTE) or remove (RTM_DELROUTE) a route; no gateway: on-link."""
    scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
    body = _RTMSG.pack(
        socket.AF_INET6 if dest.version == 6 else socket.AF_INET,
        dest.prefixlen,
        0,
        0,
        RT_TABLE_MAIN,
        protocol,
        scope,
        RTN_UNICAST,
        flags,
    )
    if dest.prefixlen:
        body += attr(RTA_DST, dest.network_address.packed)
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway.packed)
    body += attr(RTA_OIF, struct.pack("=i", index))
    name = "default route" if not dest.prefixlen else f"route to {dest}"
    name += f" via {gateway}" if gateway is not None else ""
    if kind == RTM_NEWROUTE:
        return Message(kind, NLM_F_CREATE | NLM_F_EXCL, body, f"add {name}")
    return Message(kind, 0, body, f"remove {name}")


def new_bridge(name: str, mac: bytes | None, mtu: int | None = None) -> Message:
    """A bridge that forwards at once (forward delay 0, no STP), created down."""
    data = attr(IFLA_BR_FORWARD_DELAY, struct.pack("=I", 0)) + attr(
        IFLA_BR_STP_STATE, struct.pack("=I", 0)
    )
    info = attr(IFLA_INFO_KIND, b"bridge\0") + attr(IFLA_INFO_DATA, data)
    body = ifinfo() + _ifname(name) + attr(IFLA_LINKINFO, info)
    if mac is not None:
        body += attr(IFLA_ADDRESS, mac)
    if mtu is not None:
        body += attr(IFLA_MTU, struct.pack("=I", mtu))
    return Message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create bridge {name}")


@dataclass(frozen=True)
class Link:
    index: int
    up: bool  # administratively
    running: bool  # operationally (carrier)
    mac: bytes
    kind: str | None  # bridge, veth, ... (None: a plain device)
    master: int | None
    port_state: int | None  # bridge port STP state, when enslaved to a bridge
    port_options: dict[int, int] = field(default_factory=dict, hash=False)  # IFLA_BRPORT_* u8
    bridge_options: dict[int, bytes] = field(default_factory=dict, hash=False)  # of a bridge
    mtu: int = 0
    addr_gen_mode: int | None = None  # IPv6 link-local generation (None: no IPv6 on it)
    inet6_flags: int = 0  # IF_RA_MANAGED, ...: what the last router advertisement said

    @property
    def ra_managed(self) -> bool:
        """The last router advertisement's M flag (RFC 4861 section 4.2): addresses by DHCPv6."""
        return bool(self.inet6_flags & IF_RA_MANAGED)

    @property
    def forwarding(self) -> bool:
        return self.port_state == BR_STATE_FORWARDING


def parse_link(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    a = parse_attrs(body, _IFINFOMSG.size)
    info = parse_attrs(a.get(IFLA_LINKINFO, b""))
    slave = parse_attrs(info.get(IFLA_INFO_SLAVE_DATA, b""))
    oper = a[IFLA_OPERSTATE][0] if a.get(IFLA_OPERSTATE) else IF_OPER_UNKNOWN
    inet6 = parse_attrs(parse_attrs(a.get(IFLA_AF_SPEC, b"")).get(socket.AF_INET6, b""))
    kind = info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode() or None
    return Link(
        index=index,
        up=bool(flags & IFF_UP),
        running=oper in (IF_OPER_UP, IF_OPER_UNKNOWN) and bool(flags & IFF_RUNNING),
        mac=a.get(IFLA_ADDRESS, b""),
        kind=kind,
        master=struct.unpack("=I", a[IFLA_MASTER])[0] if IFLA_MASTER in a else None,
        port_state=slave[IFLA_BRPORT_STATE][0] if IFLA_BRPORT_STATE in slave else None,
        port_options={k: v[0] for k, v in slave.items() if len(v) == 1},
        bridge_options=parse_attrs(info.get(IFLA_INFO_DATA, b"")) if kind == "bridge" else {},
        mtu=struct.unpack("=I", a[IFLA_MTU])[0] if IFLA_MTU in a else 0,
        addr_gen_mode=inet6[IFLA_INET6_ADDR_GEN_MODE][0]
        if IFLA_INET6_ADDR_GEN_MODE in inet6
        else None,
        inet6_flags=struct.unpack("=I", inet6[IFLA_INET6_FLAGS])[0]
        if len(inet6.get(IFLA_INET6_FLAGS, b"")) == 4
        else 0,
    )


class Channel:
    """A blocking NETLINK_ROUTE socket in the namespace where it was opened."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.netlink = Socket(self.sock, 1 << 20)  # one link's answer can be large (many VFs)
        self._ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

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

    def query(self, kind: int, body: bytes, dump: bool = False) -> list[bytes]:
        """A GET request: the bodies of the answers (one, or all of a dump)."""
        request = Request(kind, NLM_F_DUMP if dump else 0, body, f"query {kind}")
        return self.netlink.call(request)

    def link(self, name: str) -> Link | None:
        """The link called ``name`` in this namespace, or None."""
        try:
            found = self.query(RTM_GETLINK, ifinfo() + _ifname(name))
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return parse_link(found[0]) if found else None

    def link_by_index(self, index: int) -> Link | None:
        """The link with ``index`` in this namespace, or None."""
        try:
            found = self.query(RTM_GETLINK, ifinfo(index))
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return parse_link(found[0]) if found else None

    def link_names(self) -> list[str]:
        """Names of every link in this namespace."""
        names = []
        for body in self.query(RTM_GETLINK, ifinfo(), dump=True):
            name = parse_attrs(body, _IFINFOMSG.size).get(IFLA_IFNAME)
            if name:
                names.append(name.rstrip(b"\0").decode(errors="replace"))
        return names

    def is_local(self, ip: IPAddress) -> bool:
        """Whether ``ip`` is one of this namespace's own addresses (a route lookup: one
        round trip, whatever the number of links)."""
        family, bits = (socket.AF_INET6, 128) if ip.version == 6 else (socket.AF_INET, 32)
        body = _RTMSG.pack(family, bits, 0, 0, 0, 0, 0, 0, 0) + attr(RTA_DST, ip.packed)
        try:
            found = self.query(RTM_GETROUTE, body)
        except NetlinkError:  # unreachable: certainly not local
            return False
        return bool(found) and _RTMSG.unpack_from(found[0])[7] == RTN_LOCAL

    def on_link(self, ip: IPAddress) -> int | None:
        """The link ``ip`` is on here (its route has no gateway), or None (routed on by a
        gateway, local, or unreachable)."""
        family, bits = (socket.AF_INET6, 128) if ip.version == 6 else (socket.AF_INET, 32)
        body = _RTMSG.pack(family, bits, 0, 0, 0, 0, 0, 0, 0) + attr(RTA_DST, ip.packed)
        try:
            found = self.query(RTM_GETROUTE, body)
        except NetlinkError:
            return None
        if not found or _RTMSG.unpack_from(found[0])[7] != RTN_UNICAST:
            return None
        a = parse_attrs(found[0], _RTMSG.size)
        if RTA_GATEWAY in a or RTA_OIF not in a:
            return None
        return int(struct.unpack("=i", a[RTA_OIF])[0])

    def dump(self, kind: int, family: int = socket.AF_UNSPEC) -> list[bytes]:
        """Every object of one kind (RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH, ...), as the
        kernel sent it: every table, every link, each body whole."""
        if kind in (RTM_GETROUTE, RTM_GETRULE):  # rtmsg and fib_rule_hdr share a layout
            body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        elif kind == RTM_GETNEXTHOP:
            body = _NHMSG.pack(family, 0, 0, 0, 0)
        elif kind == RTM_GETNEIGH:
            body = _NDMSG.pack(family, 0, 0, 0, 0, 0, 0)
        else:
            body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
        return self.query(kind, body, dump=True)

    def request(self, *messages: Message, absent_ok: bool = False) -> None:
        """Send all messages in one buffer and wait for every ack; raise the first refusal.

        With ``absent_ok``, what is already gone counts as done (idempotent delete).
        """
        for msg, err in zip(messages, self.netlink.acks(messages), strict=True):
            if err and not (absent_ok and err in ABSENT):
                raise NetlinkError(err, msg.what)
