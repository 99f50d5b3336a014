"""An nf_tables batch, as sent, back into text: so tests compare what is applied.

The job's rules are built once, as nfnetlink messages (nfnl.py), and those
bytes are what the kernel gets. This decoder turns the bytes back into one
canonical text, and the golden tests compare that text: a change to the
encoder shows up in the golden text or nowhere. It decodes strictly: every
attribute is shown, in order; one it does not know, a nested attribute
without the nested flag, non-zero padding or trailing bytes show as ``?``
items rather than being dropped, so no byte sent escapes the comparison.

Format: one line per message (type, family, flags), then one line per
top-level attribute (``name=value``); expressions and set elements one per
line below them. Nested attributes are ``name(...)``; strings are quoted
without their terminating NUL, or ``"name"/16`` for a fixed-size field
padded with NULs; other data (zeros too) is hex.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Union

from . import nfnl
from .core import (
    ATTR_HEADER,
    NLA_F_NESTED,
    NLA_TYPE_MASK,
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    align,
    parse_messages,
)

Attr = tuple[int, bool, bytes]  # type (-1: bytes that are no attribute), nested flag, payload
Decoder = Callable[[bytes], str]
Schema = dict[int, tuple[str, Union["Schema", Decoder]]]

_TYPES = {
    nfnl.NFT_MSG_NEWTABLE: "newtable",
    nfnl.NFT_MSG_GETTABLE: "gettable",
    nfnl.NFT_MSG_GETSET: "getset",
    nfnl.NFT_MSG_DELTABLE: "deltable",
    nfnl.NFT_MSG_NEWCHAIN: "newchain",
    nfnl.NFT_MSG_DELCHAIN: "delchain",
    nfnl.NFT_MSG_NEWRULE: "newrule",
    nfnl.NFT_MSG_DELRULE: "delrule",
    nfnl.NFT_MSG_NEWSET: "newset",
    nfnl.NFT_MSG_DELSET: "delset",
    nfnl.NFT_MSG_NEWSETELEM: "newsetelem",
    nfnl.NFT_MSG_DELSETELEM: "delsetelem",
}
_FLAGS = [
    (NLM_F_REQUEST, "request"),
    (NLM_F_ACK, "ack"),
    (NLM_F_CREATE, "create"),
    (NLM_F_EXCL, "excl"),
    (NLM_F_APPEND, "append"),
    (NLM_F_REPLACE, "replace"),
]


def _flags(flags: int) -> str:
    names = [name for bit, name in _FLAGS if flags & bit]
    rest = flags & ~sum(bit for bit, _ in _FLAGS)
    return ",".join(names + ([hex(rest)] if rest else []))


def _string(data: bytes) -> str:
    text, nul, tail = data.partition(b"\0")
    if nul and text and not tail.strip(b"\0") and text.isascii() and text.decode().isprintable():
        quoted = '"' + text.decode() + '"'
        return quoted if not tail else f"{quoted}/{len(data)}"
    return "0x" + data.hex()


def _u32(names: dict[int, str] | None = None) -> Decoder:
    def decode(data: bytes) -> str:
        if len(data) != 4:
            return "?0x" + data.hex()
        value = struct.unpack(">i", data)[0]
        return names.get(value, str(value)) if names else str(value)

    return decode


def _u64(data: bytes) -> str:
    return str(struct.unpack(">Q", data)[0]) if len(data) == 8 else "?0x" + data.hex()


def _udata(data: bytes) -> str:
    """Rule userdata: (type, length, value) items, the comment among them."""
    items, offset = [], 0
    while offset + 2 <= len(data):
        kind, length = data[offset], data[offset + 1]
        value = data[offset + 2 : offset + 2 + length]
        name = "comment" if kind == nfnl.NFTNL_UDATA_RULE_COMMENT else f"?{kind}"
        items.append(f"{name}={_string(value)}")
        offset += 2 + length
    if offset != len(data):
        items.append("?trailing=0x" + data[offset:].hex())
    return "(" + " ".join(items) + ")"


_REG = _u32({nfnl.NFT_REG_VERDICT: "verdict"})
_VERDICT: Schema = {
    nfnl.NFTA_VERDICT_CODE: (
        "code",
        _u32({nfnl.NF_DROP: "drop", 1: "accept", nfnl.NFT_JUMP: "jump", -4: "goto", -5: "return"}),
    ),
    nfnl.NFTA_VERDICT_CHAIN: ("chain", _string),
}
_DATA: Schema = {
    nfnl.NFTA_DATA_VALUE: ("value", _string),
    nfnl.NFTA_DATA_VERDICT: ("verdict", _VERDICT),
}
_EXPRS: dict[str, Schema] = {
    "meta": {
        nfnl.NFTA_META_DREG: ("dreg", _REG),
        nfnl.NFTA_META_KEY: (
            "key",
            _u32(
                {
                    nfnl.NFT_META_NFPROTO: "nfproto",
                    nfnl.NFT_META_IIFNAME: "iifname",
                    nfnl.NFT_META_OIFNAME: "oifname",
                    nfnl.NFT_META_L4PROTO: "l4proto",
                }
            ),
        ),
    },
    "cmp": {
        nfnl.NFTA_CMP_SREG: ("sreg", _REG),
        nfnl.NFTA_CMP_OP: (
            "op",
            _u32(
                {
                    nfnl.NFT_CMP_EQ: "eq",
                    nfnl.NFT_CMP_NEQ: "neq",
                    nfnl.NFT_CMP_LTE: "lte",
                    nfnl.NFT_CMP_GTE: "gte",
                }
            ),
        ),
        nfnl.NFTA_CMP_DATA: ("data", _DATA),
    },
    "payload": {
        nfnl.NFTA_PAYLOAD_DREG: ("dreg", _REG),
        nfnl.NFTA_PAYLOAD_BASE: (
            "base",
            _u32(
                {
                    nfnl.NFT_PAYLOAD_NETWORK_HEADER: "network",
                    nfnl.NFT_PAYLOAD_TRANSPORT_HEADER: "transport",
                }
            ),
        ),
        nfnl.NFTA_PAYLOAD_OFFSET: ("offset", _u32()),
        nfnl.NFTA_PAYLOAD_LEN: ("len", _u32()),
    },
    "immediate": {
        nfnl.NFTA_IMMEDIATE_DREG: ("dreg", _REG),
        nfnl.NFTA_IMMEDIATE_DATA: ("data", _DATA),
    },
    "fib": {
        nfnl.NFTA_FIB_DREG: ("dreg", _REG),
        nfnl.NFTA_FIB_RESULT: ("result", _u32({nfnl.NFT_FIB_RESULT_ADDRTYPE: "type"})),
        nfnl.NFTA_FIB_FLAGS: ("flags", _u32({nfnl.NFTA_FIB_F_DADDR: "daddr"})),
    },
    "ct": {
        nfnl.NFTA_CT_DREG: ("dreg", _REG),
        nfnl.NFTA_CT_KEY: ("key", _u32({nfnl.NFT_CT_STATE: "state"})),
    },
    "bitwise": {
        nfnl.NFTA_BITWISE_SREG: ("sreg", _REG),
        nfnl.NFTA_BITWISE_DREG: ("dreg", _REG),
        nfnl.NFTA_BITWISE_LEN: ("len", _u32()),
        nfnl.NFTA_BITWISE_MASK: ("mask", _DATA),
        nfnl.NFTA_BITWISE_XOR: ("xor", _DATA),
    },
    "counter": {
        nfnl.NFTA_COUNTER_BYTES: ("bytes", _u64),
        nfnl.NFTA_COUNTER_PACKETS: ("packets", _u64),
    },
}
_ELEMENT: Schema = {
    nfnl.NFTA_SET_ELEM_KEY: ("key", _DATA),
    nfnl.NFTA_SET_ELEM_DATA: ("data", _DATA),
}


def _attrs(data: bytes) -> list[Attr]:
    """(type, nested flag, payload) of each attribute; bytes that do not parse come last as
    type -1, so that they show."""
    found, offset = [], 0
    while offset + ATTR_HEADER.size <= len(data):
        length, kind = ATTR_HEADER.unpack_from(data, offset)
        if length < ATTR_HEADER.size or offset + length > len(data):
            break
        payload = data[offset + ATTR_HEADER.size : offset + length]
        padding = data[offset + length : offset + align(length)]
        found.append((kind & NLA_TYPE_MASK, bool(kind & NLA_F_NESTED), payload))
        if padding.strip(b"\0"):
            found.append((-1, False, padding))
        offset += align(length)
    if offset < len(data):
        found.append((-1, False, data[offset:]))
    return found


def _items(attrs: list[Attr], schema: Schema) -> list[str]:
    """``name=value`` or ``name(...)`` for each attribute, in order."""
    items = []
    for kind, nested, payload in attrs:
        name, decode = schema.get(kind, (f"?{kind}", None))
        if decode is None:
            items.append(f"{name}=0x{payload.hex()}")
        elif isinstance(decode, dict):
            mark = "" if nested else "!flat"
            items.append(f"{name}{mark}(" + " ".join(_items(_attrs(payload), decode)) + ")")
        else:
            items.append(f"{name}{'!nested' if nested else ''}={decode(payload)}")
    return items


def _list(data: bytes, describe: Callable[[bytes], str]) -> list[str]:
    """A nested array (NFTA_LIST_ELEM items), one line each."""
    lines = []
    for kind, nested, payload in _attrs(data):
        if kind != nfnl.NFTA_LIST_ELEM or not nested:
            lines.append(f"?{kind}{'' if nested else '!flat'}=0x{payload.hex()}")
        else:
            lines.append(describe(payload))
    return lines


def _expression(data: bytes) -> str:
    attrs = _attrs(data)
    if (
        len(attrs) == 2
        and attrs[0][0] == nfnl.NFTA_EXPR_NAME
        and attrs[1][:2] == (nfnl.NFTA_EXPR_DATA, True)
    ):
        name = _string(attrs[0][2]).strip('"')
        return " ".join([name, *_items(_attrs(attrs[1][2]), _EXPRS.get(name, {}))])
    return "?expression=0x" + data.hex()


def _element(data: bytes) -> str:
    return " ".join(_items(_attrs(data), _ELEMENT))


_LISTS: dict[tuple[int, int], tuple[str, Callable[[bytes], str]]] = {
    (nfnl.NFT_MSG_NEWRULE, nfnl.NFTA_RULE_EXPRESSIONS): ("expressions", _expression),
    (nfnl.NFT_MSG_NEWSETELEM, nfnl.NFTA_SET_ELEM_LIST_ELEMENTS): ("elements", _element),
    (nfnl.NFT_MSG_DELSETELEM, nfnl.NFTA_SET_ELEM_LIST_ELEMENTS): ("elements", _element),
}
_TOP: dict[int, Schema] = {
    nfnl.NFT_MSG_NEWCHAIN: {nfnl.NFTA_CHAIN_TABLE: ("table", _string), 3: ("name", _string)},
    nfnl.NFT_MSG_NEWRULE: {
        nfnl.NFTA_RULE_TABLE: ("table", _string),
        nfnl.NFTA_RULE_CHAIN: ("chain", _string),
        nfnl.NFTA_RULE_USERDATA: ("userdata", _udata),
    },
    nfnl.NFT_MSG_NEWSET: {
        nfnl.NFTA_SET_TABLE: ("table", _string),
        nfnl.NFTA_SET_NAME: ("name", _string),
    },
    nfnl.NFT_MSG_NEWSETELEM: {
        nfnl.NFTA_SET_ELEM_LIST_TABLE: ("table", _string),
        nfnl.NFTA_SET_ELEM_LIST_SET: ("set", _string),
    },
}
_SAME_SHAPE = {  # deleting or getting an object names it as creating it does
    nfnl.NFT_MSG_DELCHAIN: nfnl.NFT_MSG_NEWCHAIN,
    nfnl.NFT_MSG_DELRULE: nfnl.NFT_MSG_NEWRULE,
    nfnl.NFT_MSG_DELSET: nfnl.NFT_MSG_NEWSET,
    nfnl.NFT_MSG_GETSET: nfnl.NFT_MSG_NEWSET,
    nfnl.NFT_MSG_DELSETELEM: nfnl.NFT_MSG_NEWSETELEM,
}
_TOP.update({kind: _TOP[like] for kind, like in _SAME_SHAPE.items()})
_TOP[nfnl.NFT_MSG_GETTABLE] = {nfnl.NFTA_TABLE_NAME: ("name", _string)}


def _nfgen(body: bytes) -> tuple[str, bytes]:
    if len(body) < 4:
        return "?nfgenmsg=0x" + body.hex(), b""
    family, version, res_id = struct.unpack_from("=BBH", body)
    name = nfnl.FAMILY_NAMES.get(family, f"family{family}")
    extra = f" version={version}" if version else ""
    extra += f" res_id={struct.unpack('>H', body[2:4])[0]}" if res_id else ""
    return name + extra, body[4:]


def describe_message(kind: int, flags: int, body: bytes) -> list[str]:
    """One nfnetlink message as lines of text (the first names it, the rest are indented)."""
    head, attrs = _nfgen(body)
    if kind in (nfnl.NFNL_MSG_BATCH_BEGIN, nfnl.NFNL_MSG_BATCH_END):
        verb = "begin" if kind == nfnl.NFNL_MSG_BATCH_BEGIN else "end"
        lines = [f"batch {verb} {head} [{_flags(flags)}]"]
        return lines + ([f"  ?attributes=0x{attrs.hex()}"] if attrs else [])
    subsys, msg = kind >> 8, kind & 0xFF
    if subsys != nfnl.NFNL_SUBSYS_NFTABLES:
        return [f"?subsystem{subsys} {msg} [{_flags(flags)}] 0x{body.hex()}"]
    lines = [f"{_TYPES.get(msg, f'?msg{msg}')} {head} [{_flags(flags)}]"]
    schema = _TOP.get(msg, {})
    for one in _attrs(attrs):
        listed = _LISTS.get((msg, one[0]))
        if listed is not None and one[1]:
            lines.append(f"  {listed[0]}")
            lines += [f"    {line}" for line in _list(one[2], listed[1])]
        else:
            lines += [f"  {item}" for item in _items([one], schema)]
    return lines


def describe_batch(data: bytes) -> str:
    """What one ``send`` of nfnetlink messages asks of the kernel, as text."""
    lines = []
    for msg in parse_messages(data):
        lines += describe_message(msg.kind, msg.flags, msg.payload)
    return "\n".join(lines)
