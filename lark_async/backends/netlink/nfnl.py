"""nfnetlink for nf_tables: the job's rules as one batch, and what is read back.

Adding or removing one job is a handful of messages in one nfnetlink batch
(one kernel transaction); these encoders are the only definition of the
inet job's rules and of a bridged job's removal, and the golden tests compare
exactly the bytes sent (decoded by nftdecode.py). Going through libnftables
instead costs loading the library and filling its cache with every chain and
element of the shared table first, which grows with the number of jobs on the
node. The shared tables, and a bridged job's rules, are nft text applied
through libnftables (nft.py). The encodings are the kernel's UAPI
(linux/netfilter/nf_tables.h); rules read back in ``nft list`` exactly like
the ones nft writes.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from ...decide.reach import NodeReach, Proto
from .core import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    MalformedMessage,
    NetlinkError,
    Request,
    Socket,
    attr,
    attr_list,
    nest,
    parse_attrs,
)

__all__ = ["NLM_F_EXCL", "attr_list"]

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE, NFNL_SUBSYS_NFTABLES = 3, 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFPROTO_UNSPEC, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_ARP = 0, 1, 2, 3
NFPROTO_NETDEV, NFPROTO_BRIDGE, NFPROTO_IPV6 = 5, 7, 10

NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFT_MSG_DELTABLE = 0, 1, 2
NFT_MSG_NEWCHAIN, NFT_MSG_GETCHAIN, NFT_MSG_DELCHAIN = 3, 4, 5
NFT_MSG_NEWSET, NFT_MSG_GETSET, NFT_MSG_DELSET = 9, 10, 11
NFT_MSG_GETGEN = 16
NFTA_TABLE_NAME = 1
NFTA_SET_TABLE, NFTA_SET_NAME = 1, 2
FAMILY_NAMES = {
    NFPROTO_UNSPEC: "unspec",
    NFPROTO_INET: "inet",
    NFPROTO_IPV4: "ip",
    NFPROTO_ARP: "arp",
    NFPROTO_NETDEV: "netdev",
    NFPROTO_BRIDGE: "bridge",
    NFPROTO_IPV6: "ip6",
}
NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE = 6, 7, 8
NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM, NFT_MSG_DELSETELEM = 12, 13, 14

NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_USERDATA = 1, 2, 4, 7
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_META_DREG, NFTA_META_KEY = 1, 2
NFT_META_NFPROTO, NFT_META_IIFNAME, NFT_META_OIFNAME, NFT_META_L4PROTO = 15, 6, 7, 16
NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA = 1, 2, 3
NFT_CMP_EQ, NFT_CMP_NEQ, NFT_CMP_LTE, NFT_CMP_GTE = 0, 1, 3, 5
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN = 1, 2, 3, 4
NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER = 1, 2
NFTA_FIB_DREG, NFTA_FIB_RESULT, NFTA_FIB_FLAGS = 1, 2, 3
NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_DADDR = 3, 1 << 1
RTN_UNICAST = 1  # (linux/rtnetlink.h: a fib address type)
NFTA_CT_DREG, NFTA_CT_KEY, NFT_CT_STATE = 1, 2, 0
CT_ESTABLISHED, CT_RELATED = 1 << 1, 1 << 2  # ct state bits (NF_CT_STATE_BIT)
NFTA_BITWISE_SREG, NFTA_BITWISE_DREG, NFTA_BITWISE_LEN = 1, 2, 3
NFTA_BITWISE_MASK, NFTA_BITWISE_XOR = 4, 5
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
NFT_REG_VERDICT, NFT_REG_1 = 0, 1
NF_DROP, NFT_JUMP, NFT_RETURN = 0, -3, -5
IPPROTO = {Proto.TCP: 6, Proto.UDP: 17}
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT = 135, 136  # (RFC 4861 4.3, 4.4)
DNS_PORT = 53
NFTNL_UDATA_RULE_COMMENT = 0
IFNAMSIZ = 16
JOB_PORTS = b"e_"  # ``oifname "e_*"``: a prefix, compared without its NUL


def _str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">i" if value < 0 else ">I", value))


def _u64(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">Q", value))


def _nfgen(family: int, res_id: int = 0) -> bytes:
    return struct.pack("=BBH", family, 0, socket.htons(res_id))


def _expr(name: str, *data: bytes) -> bytes:
    return nest(NFTA_LIST_ELEM, _str(NFTA_EXPR_NAME, name), nest(NFTA_EXPR_DATA, *data))


def _meta(key: int) -> bytes:
    return _expr("meta", _u32(NFTA_META_DREG, NFT_REG_1), _u32(NFTA_META_KEY, key))


def _cmp(op: int, value: bytes) -> bytes:
    return _expr(
        "cmp",
        _u32(NFTA_CMP_SREG, NFT_REG_1),
        _u32(NFTA_CMP_OP, op),
        nest(NFTA_CMP_DATA, attr(NFTA_DATA_VALUE, value)),
    )


def _ifname_is(direction: int, ifname: str) -> bytes:
    return _meta(direction) + _cmp(NFT_CMP_EQ, ifname.encode() + b"\0")


def _is_ipv4() -> bytes:
    return _meta(NFT_META_NFPROTO) + _cmp(NFT_CMP_EQ, bytes([NFPROTO_IPV4]))


def _payload(base: int, offset: int, length: int) -> bytes:
    return _expr(
        "payload",
        _u32(NFTA_PAYLOAD_DREG, NFT_REG_1),
        _u32(NFTA_PAYLOAD_BASE, base),
        _u32(NFTA_PAYLOAD_OFFSET, offset),
        _u32(NFTA_PAYLOAD_LEN, length),
    )


def _ipv4_address_is(offset: int, op: int, addr: ipaddress.IPv4Address) -> bytes:
    """``ip saddr`` (offset 12) or ``ip daddr`` (16); nft's own dependency on IPv4 first."""
    return _is_ipv4() + _payload(NFT_PAYLOAD_NETWORK_HEADER, offset, 4) + _cmp(op, addr.packed)


def _is_ipv6() -> bytes:
    return _meta(NFT_META_NFPROTO) + _cmp(NFT_CMP_EQ, bytes([NFPROTO_IPV6]))


def _ipv6_source_not(addr: ipaddress.IPv6Address) -> bytes:
    """``ip6 saddr != ADDR ip6 saddr != fe80::/10``: neither the job's address nor a
    link-local one (neighbour discovery's; the kernel forwards no link-local source)."""
    mask, zero = b"\xff\xc0", b"\0\0"
    link_local = _payload(NFT_PAYLOAD_NETWORK_HEADER, 8, 2) + _expr(
        "bitwise",
        _u32(NFTA_BITWISE_SREG, NFT_REG_1),
        _u32(NFTA_BITWISE_DREG, NFT_REG_1),
        _u32(NFTA_BITWISE_LEN, 2),
        nest(NFTA_BITWISE_MASK, attr(NFTA_DATA_VALUE, mask)),
        nest(NFTA_BITWISE_XOR, attr(NFTA_DATA_VALUE, zero)),
    )
    return (
        _is_ipv6()
        + _payload(NFT_PAYLOAD_NETWORK_HEADER, 8, 16)
        + _cmp(NFT_CMP_NEQ, addr.packed)
        + link_local
        + _cmp(NFT_CMP_NEQ, b"\xfe\x80")
    )


def _icmpv6_type_is(kind: int) -> bytes:
    """``icmpv6 type K``, with nft's own dependencies (IPv6, then ICMPv6) first."""
    found = _is_ipv6()
    found += _meta(NFT_META_L4PROTO) + _cmp(NFT_CMP_EQ, bytes([IPPROTO_ICMPV6]))
    return found + _payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1) + _cmp(NFT_CMP_EQ, bytes([kind]))


def _dport_is(proto: int, low: int, high: int) -> bytes:
    """``tcp dport 3128`` or ``udp dport 8000-8010``, encoded as nft encodes them (the
    protocol, then the port, one compare or two)."""
    found = _meta(NFT_META_L4PROTO) + _cmp(NFT_CMP_EQ, bytes([proto]))
    found += _payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
    if low == high:
        return found + _cmp(NFT_CMP_EQ, struct.pack(">H", low))
    return (
        found
        + _cmp(NFT_CMP_GTE, struct.pack(">H", low))
        + _cmp(NFT_CMP_LTE, struct.pack(">H", high))
    )


def _to_the_node() -> bytes:
    """``fib daddr type != unicast``: the packet is for the node itself (a local, broadcast,
    anycast or multicast address; nft asks the node's local routes). False for every packet
    the node forwards, true for every packet it delivers to itself: in a chain both the
    forward and the input hook jump to, it tells them apart."""
    fib = _expr(
        "fib",
        _u32(NFTA_FIB_DREG, NFT_REG_1),
        _u32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE),
        _u32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR),
    )
    return fib + _cmp(NFT_CMP_NEQ, struct.pack("=I", RTN_UNICAST))


def _ct_established(yes: bool) -> bytes:
    """``ct state established,related`` (or ``ct state ! established,related``: new, invalid
    or untracked): the packet belongs to a connection the other side opened, or not."""
    state = _expr("ct", _u32(NFTA_CT_DREG, NFT_REG_1), _u32(NFTA_CT_KEY, NFT_CT_STATE))
    mask = struct.pack("=I", CT_ESTABLISHED | CT_RELATED)
    zero = struct.pack("=I", 0)
    bitwise = _expr(
        "bitwise",
        _u32(NFTA_BITWISE_SREG, NFT_REG_1),
        _u32(NFTA_BITWISE_DREG, NFT_REG_1),
        _u32(NFTA_BITWISE_LEN, 4),
        nest(NFTA_BITWISE_MASK, attr(NFTA_DATA_VALUE, mask)),
        nest(NFTA_BITWISE_XOR, attr(NFTA_DATA_VALUE, zero)),
    )
    return state + bitwise + _cmp(NFT_CMP_NEQ if yes else NFT_CMP_EQ, zero)


def _then(code: int) -> bytes:
    return _expr(
        "immediate",
        _u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT),
        nest(NFTA_IMMEDIATE_DATA, _verdict(code)),
    )


def _counter() -> bytes:
    return _expr("counter", _u64(NFTA_COUNTER_BYTES, 0), _u64(NFTA_COUNTER_PACKETS, 0))


def _verdict(code: int, chain: str | None = None) -> bytes:
    parts = [_u32(NFTA_VERDICT_CODE, code)]
    if chain is not None:
        parts.append(_str(NFTA_VERDICT_CHAIN, chain))
    return nest(NFTA_DATA_VERDICT, *parts)


def _comment(text: str) -> bytes:
    value = text.encode() + b"\0"
    return attr(
        NFTA_RULE_USERDATA, struct.pack("=BB", NFTNL_UDATA_RULE_COMMENT, len(value)) + value
    )


@dataclass(frozen=True)
class Message:
    """One nf_tables message of a batch (``kind`` without the subsystem)."""

    kind: int
    flags: int
    body: bytes


def _rule(table: str, chain: str, exprs: bytes, comment: str | None = None) -> Message:
    body = (
        _nfgen(NFPROTO_INET)
        + _str(NFTA_RULE_TABLE, table)
        + _str(NFTA_RULE_CHAIN, chain)
        + nest(NFTA_RULE_EXPRESSIONS, exprs)
        + (_comment(comment) if comment else b"")
    )
    return Message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, body)


def _elements(
    kind: int, flags: int, table: str, set_name: str, elems: bytes, family: int = NFPROTO_INET
) -> Message:
    body = (
        _nfgen(family)
        + _str(NFTA_SET_ELEM_LIST_TABLE, table)
        + _str(NFTA_SET_ELEM_LIST_SET, set_name)
        + nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems)
    )
    return Message(kind, flags, body)


def _ifname_key(ifname: str) -> bytes:
    return nest(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, ifname.encode().ljust(IFNAMSIZ, b"\0")))


def _addr_key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return nest(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, addr.packed))


def _chain(kind: int, flags: int, table: str, chain: str, family: int = NFPROTO_INET) -> Message:
    body = _nfgen(family) + _str(NFTA_CHAIN_TABLE, table) + _str(NFTA_CHAIN_NAME, chain)
    return Message(kind, flags, body)


@dataclass(frozen=True)
class Family6:
    """A job's IPv6, beside or instead of IPv4: its address, its NAT66 source set (None:
    routed, not masqueraded) and the comments of its IPv6 counters."""

    internal: ipaddress.IPv6Address
    nat_set: str | None
    comments: tuple[str, str]


def job_add(
    table: str,
    chain: str,
    ifname: str,
    internal: ipaddress.IPv4Address | None,
    job_map: str,
    nat_set: str | None,
    comments: tuple[str, str],
    reach: NodeReach,
    ipv6: Family6 | None = None,
) -> list[Message]:
    """The job's chain, its map entry and NAT source(s). In the chain, as nft lists it:

    * ``iifname X counter comment "Outgoing"``, ``oifname X counter comment "Incoming"``:
      every packet that crosses the veth, in either family (the inet hooks see only IP);
    * with ``ipv6``, the IPv6 part of each: ``iifname X meta nfproto ipv6 counter comment
      "OutgoingIPv6"`` and the same with ``oifname`` for ``"IncomingIPv6"``;
    * ``iifname X ip saddr != INNER drop``: no other source address (with an address);
    * with ``ipv6``, ``iifname X ip6 saddr != INNER6 ip6 saddr != fe80::/10 drop``; a job
      with IPv6 and no IPv4 (on an IPv6-only node): ``iifname X meta nfproto ipv4 drop``;
    * what the job may reach of the node (``reach_rules``);
    * ``iifname X oifname "e_*" ct state ! established,related drop``: no other NAT job,
      unless ``reach.job_to_job`` (replies to a job that may open to this one still go).
    """
    outgoing, incoming = comments
    iif = _ifname_is(NFT_META_IIFNAME, ifname)
    oif = _ifname_is(NFT_META_OIFNAME, ifname)
    msgs = [
        _chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, table, chain),
        _rule(table, chain, iif + _counter(), outgoing),
        _rule(table, chain, oif + _counter(), incoming),
    ]
    if ipv6 is not None:
        outgoing6, incoming6 = ipv6.comments
        msgs.append(_rule(table, chain, iif + _is_ipv6() + _counter(), outgoing6))
        msgs.append(_rule(table, chain, oif + _is_ipv6() + _counter(), incoming6))
    if internal is not None:
        spoof = iif + _ipv4_address_is(12, NFT_CMP_NEQ, internal) + _then(NF_DROP)
        msgs.append(_rule(table, chain, spoof))
    if ipv6 is not None:
        msgs.append(_rule(table, chain, iif + _ipv6_source_not(ipv6.internal) + _then(NF_DROP)))
        if internal is None:
            msgs.append(_rule(table, chain, iif + _is_ipv4() + _then(NF_DROP)))
    msgs += [_rule(table, chain, iif + exprs) for exprs in reach_rules(reach)]
    if not reach.job_to_job:
        other_job = _meta(NFT_META_OIFNAME) + _cmp(NFT_CMP_EQ, JOB_PORTS)
        msgs.append(_rule(table, chain, iif + other_job + _ct_established(False) + _then(NF_DROP)))
    entry = nest(
        NFTA_LIST_ELEM,
        _ifname_key(ifname),
        nest(NFTA_SET_ELEM_DATA, _verdict(NFT_JUMP, chain)),
    )
    msgs.append(_elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, table, job_map, entry))
    sources: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
    if nat_set is not None and internal is not None:
        sources.append((nat_set, internal))
    if ipv6 is not None and ipv6.nat_set is not None:
        sources.append((ipv6.nat_set, ipv6.internal))
    for set_name, addr in sources:
        elem = nest(NFTA_LIST_ELEM, _addr_key(addr))
        msgs.append(_elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, set_name, elem))
    return msgs


def reach_rules(reach: NodeReach) -> list[bytes]:
    """What a NAT job may send to the node itself (after ``iifname X``), in order:

    * ``fib daddr type != unicast ct state established,related return``: replies to what
      the node opened to the job (the node still reaches it);
    * ``icmpv6 type nd-neighbor-solicit fib daddr type != unicast return`` and the same for
      ``nd-neighbor-advert``: IPv6 neighbour discovery, what ARP (which the inet hooks never
      see) is to IPv4, so that where IPv6 is on the node still reaches the job (conntrack
      leaves it untracked: no reply of a connection);
    * ``tcp dport P fib daddr type != unicast return`` for each of ``LARK_NODE_PORTS``;
    * ``ip daddr D udp dport 53 fib daddr type != unicast return`` (``ip6 daddr`` for an
      IPv6 one) and the same for tcp, for each node address serving the job's DNS;
    * ``fib daddr type != unicast drop``: the rest, to any of the node's addresses (its
      gateway address on the job's veth too), broadcast and multicast included.

    ``return`` leaves the job's chain without a verdict: Lark's table lets the packet on and
    the node's own tables still decide as they did. Each rule is inert in the forward hook
    (``fib daddr type`` is unicast there), so the job's traffic to the world is not touched;
    it costs two lookups in the node's local routes per packet the job sends.
    """
    node = _to_the_node()
    rules = [node + _ct_established(True) + _then(NFT_RETURN)]
    for kind in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT):
        rules.append(_icmpv6_type_is(kind) + node + _then(NFT_RETURN))
    for port in reach.ports:
        rules.append(_dport_is(IPPROTO[port.proto], port.low, port.high) + node + _then(NFT_RETURN))
    for addr in reach.dns:
        if isinstance(addr, ipaddress.IPv6Address):
            to = _is_ipv6() + _payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16)
            to += _cmp(NFT_CMP_EQ, addr.packed)
        else:
            to = _ipv4_address_is(16, NFT_CMP_EQ, addr)
        for proto in (Proto.UDP, Proto.TCP):
            dns = _dport_is(IPPROTO[proto], DNS_PORT, DNS_PORT)
            rules.append(to + dns + node + _then(NFT_RETURN))
    rules.append(node + _then(NF_DROP))
    return rules


def job_remove(
    table: str,
    chain: str,
    ifname: str,
    internal: ipaddress.IPv4Address | None,
    job_map: str,
    nat_set: str | None,
    ipv6: Family6 | None = None,
) -> list[Message]:
    """Map entry and NAT source(s) first (nothing may jump to the chain), then flush and
    delete."""
    msgs = [_port_remove(table, job_map, ifname, NFPROTO_INET)]
    if nat_set is not None and internal is not None:
        msgs.append(address_remove(table, nat_set, internal))
    if ipv6 is not None and ipv6.nat_set is not None:
        msgs.append(address_remove(table, ipv6.nat_set, ipv6.internal))
    return msgs + _chain_remove(table, chain, NFPROTO_INET)


def bridge_job_remove(
    table: str, chain: str, port: str, port_map: str, addr_sets: list[str]
) -> list[Message]:
    """A bridged job: its port's map entry, its chain (with the guard chain bound to its
    rule), then the sets of its addresses, which only that chain used."""
    msgs = [_port_remove(table, port_map, port, NFPROTO_BRIDGE)]
    msgs += _chain_remove(table, chain, NFPROTO_BRIDGE)
    for addr_set in addr_sets:
        body = _nfgen(NFPROTO_BRIDGE) + _str(NFTA_SET_TABLE, table)
        msgs.append(Message(NFT_MSG_DELSET, 0, body + _str(NFTA_SET_NAME, addr_set)))
    return msgs


def address_remove(
    table: str, set_name: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> Message:
    """One address out of an inet set (a NAT source)."""
    elem = nest(NFTA_LIST_ELEM, _addr_key(addr))
    return _elements(NFT_MSG_DELSETELEM, 0, table, set_name, elem)


def _port_remove(table: str, map_name: str, ifname: str, family: int) -> Message:
    elem = nest(NFTA_LIST_ELEM, _ifname_key(ifname))
    return _elements(NFT_MSG_DELSETELEM, 0, table, map_name, elem, family)


def _chain_remove(table: str, chain: str, family: int) -> list[Message]:
    """Flush (a rule delete naming no handle: every rule of the chain), then delete."""
    flush = _nfgen(family) + _str(NFTA_RULE_TABLE, table) + _str(NFTA_RULE_CHAIN, chain)
    return [Message(NFT_MSG_DELRULE, 0, flush), _chain(NFT_MSG_DELCHAIN, 0, table, chain, family)]


def batch_requests(messages: list[Message]) -> list[Request]:
    """The batch as sent: begin, each message asking for an ack, end (which the kernel acks
    only when the transaction commits)."""
    subsys = _nfgen(NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES)
    return [
        Request(NFNL_MSG_BATCH_BEGIN, 0, subsys, "begin batch"),
        *(
            Request((NFNL_SUBSYS_NFTABLES << 8) | m.kind, NLM_F_ACK | m.flags, m.body)
            for m in messages
        ),
        Request(NFNL_MSG_BATCH_END, NLM_F_ACK, subsys, "commit batch"),
    ]


def _request(kind: int, flags: int, body: bytes, what: str) -> Request:
    return Request((NFNL_SUBSYS_NFTABLES << 8) | kind, flags, body, what)


def send_batch(netlink: Socket, messages: list[Message]) -> None:
    """Send one batch and wait for its outcome; NetlinkError for the first refusal.

    The kernel acks every message and, when it commits, the batch end; on a refusal
    it answers every message (error or ack) and never the end.
    """
    requests = batch_requests(messages)
    seqs = netlink.send(requests)
    answers = netlink.receive({seq: NLM_F_ACK for seq in seqs[1:-1]})
    for index, seq in enumerate(seqs[1:-1]):
        if answers[seq].error:
            what = f"message {index + 1} of {len(messages)} of an nf_tables batch"
            raise NetlinkError(answers[seq].error, what)
    end = netlink.receive({seqs[-1]: NLM_F_ACK})[seqs[-1]]
    if end.error:
        raise NetlinkError(end.error, requests[-1].what)


class Channel:
    """A NETLINK_NETFILTER socket in the namespace where it was opened."""

    def __init__(self, netlink: Socket | None = None) -> None:
        """``netlink``: a Socket over another transport (tests); else a socket of our own."""
        self.sock: socket.socket | None = None
        if netlink is None:
            self.sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
            )
            self.sock.bind((0, 0))
            self.sock.settimeout(10)
            netlink = Socket(self.sock)
        self.netlink = netlink

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, messages: list[Message]) -> None:
        """One transaction: all messages or none. NetlinkError for the first refusal."""
        send_batch(self.netlink, messages)

    def has_address(
        self, table: str, set_name: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> bool:
        """Whether an address set holds ``addr``: one lookup, whatever the set's size (a
        missing table or set is False)."""
        elem = nest(NFTA_LIST_ELEM, _addr_key(addr))
        body = _elements(NFT_MSG_GETSETELEM, 0, table, set_name, elem).body
        request = _request(NFT_MSG_GETSETELEM, NLM_F_ACK, body, f"look up {addr} in {set_name}")
        return self._exists(request)  # the element itself, then the ack

    def has_table(self, family: int, table: str) -> bool:
        """Whether the table exists (one lookup)."""
        body = _nfgen(family) + _str(NFTA_TABLE_NAME, table)
        return self._exists(_request(NFT_MSG_GETTABLE, 0, body, f"look up table {table}"))

    def _exists(self, request: Request) -> bool:
        """Whether the lookup found something: the kernel answers ENOENT for an absent
        object, or for an absent table or set holding it."""
        try:
            return bool(self.netlink.call(request))
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise

    def tables(self) -> list[tuple[int, str]]:
        """(family, name) of every nftables table in the namespace: one dump, no library."""
        request = _request(NFT_MSG_GETTABLE, NLM_F_DUMP, _nfgen(NFPROTO_UNSPEC), "list tables")
        found = []
        for payload in self.netlink.call(request):
            if len(payload) < 4:
                raise MalformedMessage(f"a table of {len(payload)} bytes")
            name = parse_attrs(payload[4:]).get(NFTA_TABLE_NAME, b"").rstrip(b"\0").decode()
            found.append((payload[0], name))
        return found

    def dump_rules(self, table: str, chain: str, family: int = NFPROTO_INET) -> list[bytes]:
        """The attribute payloads of every rule in one chain."""
        body = _nfgen(family) + _str(NFTA_RULE_TABLE, table) + _str(NFTA_RULE_CHAIN, chain)
        request = _request(NFT_MSG_GETRULE, NLM_F_DUMP, body, f"list rules of {chain}")
        return [payload[4:] for payload in self.netlink.call(request)]  # past nfgenmsg


def rule_counter(rule: bytes) -> tuple[str, int, int] | None:
    """(comment, bytes, packets) of a rule with a comment and a counter, else None."""
    top = parse_attrs(rule)
    udata = top.get(NFTA_RULE_USERDATA, b"")
    comment = None
    offset = 0
    while offset + 2 <= len(udata):
        kind, length = udata[offset], udata[offset + 1]
        if offset + 2 + length > len(udata):
            break
        if kind == NFTNL_UDATA_RULE_COMMENT:
            comment = udata[offset + 2 : offset + 2 + length].rstrip(b"\0").decode(errors="replace")
        offset += 2 + length
    if not comment:
        return None
    for expr in attr_list(top.get(NFTA_RULE_EXPRESSIONS, b"")):
        parts = parse_attrs(expr)
        if parts.get(NFTA_EXPR_NAME, b"").rstrip(b"\0") == b"counter":
            data = parse_attrs(parts.get(NFTA_EXPR_DATA, b""))
            nbytes, packets = data.get(NFTA_COUNTER_BYTES), data.get(NFTA_COUNTER_PACKETS)
            if nbytes is None or packets is None or len(nbytes) != 8 or len(packets) != 8:
                return None
            return comment, struct.unpack(">Q", nbytes)[0], struct.unpack(">Q", packets)[0]
    return None
