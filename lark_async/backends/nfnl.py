"""A minimal nf_tables netlink channel for the per-job fast path.

Adding or removing one job is a handful of messages in one nfnetlink batch
(one kernel transaction). Going through libnftables instead costs loading the
library and filling its cache with every chain and element of the shared
table first, which grows with the number of jobs on the node. The shared
table itself is still created through libnftables (nft.py), once per node.
The encodings are the kernel's UAPI (linux/netfilter/nf_tables.h); rules
read back in ``nft list`` exactly like the ones nft writes.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x1, 0x4, 0x200, 0x400, 0x800
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
NFPROTO_INET, NFPROTO_IPV4, NFPROTO_BRIDGE = 1, 2, 7

NFT_MSG_GETTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN = 1, 3, 5
NFTA_TABLE_NAME = 1
FAMILY_NAMES = {1: "inet", 2: "ip", 3: "arp", 7: "bridge", 10: "ip6", 5: "netdev"}
NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE = 6, 7, 8
NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM, NFT_MSG_DELSETELEM = 12, 13, 14

NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_USERDATA = 1, 2, 4, 7
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_META_DREG, NFTA_META_KEY = 1, 2
NFT_META_NFPROTO, NFT_META_IIFNAME, NFT_META_OIFNAME = 15, 6, 7
NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA = 1, 2, 3
NFT_CMP_EQ, NFT_CMP_NEQ = 0, 1
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN = 1, 2, 3, 4
NFT_PAYLOAD_NETWORK_HEADER = 1
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
NFT_REG_VERDICT, NFT_REG_1 = 0, 1
NF_DROP, NFT_JUMP = 0, -3
NFTNL_UDATA_RULE_COMMENT = 0
IFNAMSIZ = 16

_HDR = struct.Struct("=IHHII")


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _nest(kind: int, *parts: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(parts))


def _str(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack(">i" if value < 0 else ">I", value))


def _u64(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack(">Q", value))


def _nfgen(family: int, res_id: int = 0) -> bytes:
    return struct.pack("=BBH", family, 0, socket.htons(res_id))


def _expr(name: str, *data: bytes) -> bytes:
    return _nest(NFTA_LIST_ELEM, _str(NFTA_EXPR_NAME, name), _nest(NFTA_EXPR_DATA, *data))


def _meta(key: int) -> bytes:
    return _expr("meta", _u32(NFTA_META_DREG, NFT_REG_1), _u32(NFTA_META_KEY, key))


def _cmp(op: int, value: bytes) -> bytes:
    return _expr(
        "cmp",
        _u32(NFTA_CMP_SREG, NFT_REG_1),
        _u32(NFTA_CMP_OP, op),
        _nest(NFTA_CMP_DATA, _attr(NFTA_DATA_VALUE, value)),
    )


def _ifname_is(direction: int, ifname: str) -> bytes:
    return _meta(direction) + _cmp(NFT_CMP_EQ, ifname.encode() + b"\0")


def _counter() -> bytes:
    return _expr("counter", _u64(NFTA_COUNTER_BYTES, 0), _u64(NFTA_COUNTER_PACKETS, 0))


def _verdict(code: int, chain: str | None = None) -> bytes:
    parts = [_u32(NFTA_VERDICT_CODE, code)]
    if chain is not None:
        parts.append(_str(NFTA_VERDICT_CHAIN, chain))
    return _nest(NFTA_DATA_VERDICT, *parts)


def _comment(text: str) -> bytes:
    value = text.encode() + b"\0"
    return _attr(
        NFTA_RULE_USERDATA, struct.pack("=BB", NFTNL_UDATA_RULE_COMMENT, len(value)) + value
    )


@dataclass(frozen=True)
class Message:
    kind: int
    flags: int
    body: bytes


def _rule(table: str, chain: str, exprs: bytes, comment: str | None = None) -> Message:
    body = (
        _nfgen(NFPROTO_INET)
        + _str(NFTA_RULE_TABLE, table)
        + _str(NFTA_RULE_CHAIN, chain)
        + _nest(NFTA_RULE_EXPRESSIONS, exprs)
        + (_comment(comment) if comment else b"")
    )
    return Message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, body)


def _elements(kind: int, flags: int, table: str, set_name: str, elems: bytes) -> Message:
    body = (
        _nfgen(NFPROTO_INET)
        + _str(NFTA_SET_ELEM_LIST_TABLE, table)
        + _str(NFTA_SET_ELEM_LIST_SET, set_name)
        + _nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems)
    )
    return Message(kind, flags, body)


def _ifname_key(ifname: str) -> bytes:
    return _nest(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, ifname.encode().ljust(IFNAMSIZ, b"\0")))


def _addr_key(addr: ipaddress.IPv4Address) -> bytes:
    return _nest(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, addr.packed))


def _chain(kind: int, flags: int, table: str, chain: str) -> Message:
    body = _nfgen(NFPROTO_INET) + _str(NFTA_CHAIN_TABLE, table) + _str(NFTA_CHAIN_NAME, chain)
    return Message(kind, flags, body)


def job_add(
    table: str,
    chain: str,
    ifname: str,
    internal: ipaddress.IPv4Address | None,
    job_map: str,
    nat_set: str | None,
    comments: tuple[str, str],
) -> list[Message]:
    """The job's chain (counters both ways, anti-spoof drop), its map entry and NAT source."""
    outgoing, incoming = comments
    ipv4 = _meta(NFT_META_NFPROTO) + _cmp(NFT_CMP_EQ, bytes([NFPROTO_IPV4]))
    msgs = [
        _chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, table, chain),
        _rule(table, chain, _ifname_is(NFT_META_IIFNAME, ifname) + ipv4 + _counter(), outgoing),
        _rule(table, chain, _ifname_is(NFT_META_OIFNAME, ifname) + ipv4 + _counter(), incoming),
    ]
    if internal is not None:
        spoof = (
            _ifname_is(NFT_META_IIFNAME, ifname)
            + _meta(NFT_META_NFPROTO)
            + _cmp(NFT_CMP_EQ, bytes([NFPROTO_IPV4]))
            + _expr(
                "payload",
                _u32(NFTA_PAYLOAD_DREG, NFT_REG_1),
                _u32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER),
                _u32(NFTA_PAYLOAD_OFFSET, 12),
                _u32(NFTA_PAYLOAD_LEN, 4),
            )
            + _cmp(NFT_CMP_NEQ, internal.packed)
            + _expr(
                "immediate",
                _u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT),
                _nest(NFTA_IMMEDIATE_DATA, _verdict(NF_DROP)),
            )
        )
        msgs.append(_rule(table, chain, spoof))
    entry = _nest(
        NFTA_LIST_ELEM,
        _ifname_key(ifname),
        _nest(NFTA_SET_ELEM_DATA, _verdict(NFT_JUMP, chain)),
    )
    msgs.append(_elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, table, job_map, entry))
    if nat_set is not None and internal is not None:
        elem = _nest(NFTA_LIST_ELEM, _addr_key(internal))
        msgs.append(_elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, nat_set, elem))
    return msgs


def job_remove(
    table: str,
    chain: str,
    ifname: str,
    internal: ipaddress.IPv4Address | None,
    job_map: str,
    nat_set: str | None,
) -> list[Message]:
    """Map entry and NAT source first (nothing may jump to the chain), then flush and delete."""
    msgs = [
        _elements(NFT_MSG_DELSETELEM, 0, table, job_map, _nest(NFTA_LIST_ELEM, _ifname_key(ifname)))
    ]
    if nat_set is not None and internal is not None:
        elem = _nest(NFTA_LIST_ELEM, _addr_key(internal))
        msgs.append(_elements(NFT_MSG_DELSETELEM, 0, table, nat_set, elem))
    flush = _nfgen(NFPROTO_INET) + _str(NFTA_RULE_TABLE, table) + _str(NFTA_RULE_CHAIN, chain)
    msgs.append(Message(NFT_MSG_DELRULE, 0, flush))  # no handle: every rule of that chain
    msgs.append(_chain(NFT_MSG_DELCHAIN, 0, table, chain))
    return msgs


class BatchError(OSError):
    """The kernel refused the batch; ``index`` is the first refused message."""

    def __init__(self, err: int, index: int) -> None:
        super().__init__(err, __import__("os").strerror(err))
        self.index = index


def _frame(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body


class Channel:
    """A NETLINK_NETFILTER socket in the namespace where it was opened."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
        )
        self.sock.bind((0, 0))
        self.sock.settimeout(10)
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def batch(self, messages: list[Message]) -> None:
        """One transaction: all messages or none. Raise BatchError for the first refusal.

        The kernel acks every message and, when it commits, the batch end; on a refusal
        it answers every message (error or ack) and never the end.
        """
        begin = _frame(
            NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, self._next(), _nfgen(0, NFNL_SUBSYS_NFTABLES)
        )
        seqs, frames = [], [begin]
        for msg in messages:
            seq = self._next()
            seqs.append(seq)
            kind = (NFNL_SUBSYS_NFTABLES << 8) | msg.kind
            frames.append(_frame(kind, NLM_F_REQUEST | NLM_F_ACK | msg.flags, seq, msg.body))
        end = self._next()
        frames.append(
            _frame(
                NFNL_MSG_BATCH_END, NLM_F_REQUEST | NLM_F_ACK, end, _nfgen(0, NFNL_SUBSYS_NFTABLES)
            )
        )
        self.sock.send(b"".join(frames))
        pending = set(seqs) | {end}
        first: tuple[int, int] | None = None
        while pending and not (first is not None and pending == {end}):
            data = self.sock.recv(65536)
            for kind, seq, payload in _messages(data):
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    (err,) = struct.unpack_from("=i", payload)
                    if err and seq != end:
                        index = seqs.index(seq)
                        if first is None or index < first[1]:
                            first = (-err, index)
        if first is not None:
            raise BatchError(*first)

    def has_address(self, table: str, set_name: str, addr: ipaddress.IPv4Address) -> bool:
        """Whether an IPv4 set holds ``addr``: one lookup, whatever the set's size (a
        missing table or set is False)."""
        elem = _nest(NFTA_LIST_ELEM, _addr_key(addr))
        body = _elements(NFT_MSG_GETSETELEM, 0, table, set_name, elem).body
        seq = self._next()
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM
        self.sock.send(_frame(kind, NLM_F_REQUEST | NLM_F_ACK, seq, body))
        found = False
        while True:
            for mkind, mseq, payload in _messages(self.sock.recv(65536)):
                if mseq != seq:
                    continue
                if mkind != NLMSG_ERROR:
                    found = True  # the element itself
                    continue
                (err,) = struct.unpack_from("=i", payload)
                if err == 0:
                    return found
                if -err == __import__("errno").ENOENT:
                    return False
                raise OSError(-err, __import__("os").strerror(-err))

    def tables(self) -> list[tuple[int, str]]:
        """(family, name) of every nftables table in the namespace: one dump, no library."""
        seq = self._next()
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
        self.sock.send(_frame(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, _nfgen(0)))
        found: list[tuple[int, str]] = []
        while True:
            for mkind, mseq, payload in _messages(self.sock.recv(1 << 16)):
                if mseq != seq:
                    continue
                if mkind == NLMSG_DONE:
                    return found
                if mkind == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload)
                    if err:
                        raise OSError(-err, __import__("os").strerror(-err))
                    continue
                name = attrs(payload[4:]).get(NFTA_TABLE_NAME, b"").rstrip(b"\0").decode()
                found.append((payload[0], name))

    def dump_rules(self, table: str, chain: str, family: int = NFPROTO_INET) -> list[bytes]:
        """The attribute payloads of every rule in one chain."""
        body = _nfgen(family) + _str(NFTA_RULE_TABLE, table) + _str(NFTA_RULE_CHAIN, chain)
        seq = self._next()
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE
        self.sock.send(_frame(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        rules: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 17)
            for mkind, mseq, payload in _messages(data):
                if mseq != seq:
                    continue
                if mkind == NLMSG_DONE:
                    return rules
                if mkind == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload)
                    if err:
                        raise OSError(-err, __import__("os").strerror(-err))
                    continue
                rules.append(payload[4:])  # past nfgenmsg


def _messages(data: bytes):  # type: ignore[no-untyped-def]
    offset = 0
    while offset + _HDR.size <= len(data):
        length, kind, _flags, seq, _pid = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            return
        yield kind, seq, data[offset + _HDR.size : offset + length]
        offset += length + (-length % 4)


def attrs(data: bytes) -> dict[int, bytes]:
    """Top-level attributes (last one wins), nested flag stripped."""
    found, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & ~NLA_F_NESTED] = data[offset + 4 : offset + length]
        offset += length + (-length % 4)
    return found


def attr_list(data: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset + 4 <= len(data):
        length, _kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        items.append(data[offset + 4 : offset + length])
        offset += length + (-length % 4)
    return items


def rule_counter(rule: bytes) -> tuple[str, int, int] | None:
    """(comment, bytes, packets) of a rule with a comment and a counter, else None."""
    top = attrs(rule)
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
        parts = attrs(expr)
        if parts.get(NFTA_EXPR_NAME, b"").rstrip(b"\0") == b"counter":
            data = attrs(parts.get(NFTA_EXPR_DATA, b""))
            nbytes, packets = data.get(NFTA_COUNTER_BYTES), data.get(NFTA_COUNTER_PACKETS)
            if nbytes is None or packets is None or len(nbytes) != 8 or len(packets) != 8:
                return None
            return comment, struct.unpack(">Q", nbytes)[0], struct.unpack(">Q", packets)[0]
    return None
