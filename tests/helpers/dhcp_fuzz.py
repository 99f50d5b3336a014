"""Mutated real DHCP replies, fed to the codec, the framing and a client in each of its states.

Pure and deterministic (one ``random.Random(seed)``), no sockets and no clock: shared by
``bench/dhcp_fuzz.py`` (100,000 inputs, the figures) and ``tests/unit/dhcp/test_fuzz.py``
(5,000, in the suite). A plain mutator rather than hypothesis's engine: it runs 100,000
inputs in seconds, and starting from well-formed replies it keeps most of them carrying
the magic cookie and the client's xid, so they reach the client's own checks instead of
dying in the first length test.

The seeds are replies a server would really send to what the client last transmitted: the
right xid, chaddr and client id; subnet mask, router, DNS, lease/T1/T2, classless routes,
hostname, domain, MTU; now and then option overload (52) with options in file and sname,
and options split into several pieces (RFC 3396), across areas too. The mutations are
byte-level (flips, interesting bytes, insertion, deletion, truncation, duplicated spans),
option-level (duplicate, remove, resize, lying lengths, other codes, values at the edges,
moved between areas, END and PAD in odd places, a changed overload) and in the fixed header.

Invariants, each a failure when broken:
* ``decode`` returns a Message or raises MalformedMessage, nothing else;
* where it returns one, ``decode(encode(m)) == m``;
* ``Client.handle`` never raises on PacketReceived, nor on TimerFired at its next_deadline;
* after each, ``next_deadline`` is None or a number, not NaN, and not before ``now``;
* ``frame.parse_udp`` returns bytes or None and never raises;
* an unmutated reply decodes to exactly the options it was built with, and an unmutated
  frame parses back to its payload (the generator's own check).
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import random
import struct
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

from dhcp import frame, message
from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.errors import MalformedMessage
from dhcp.events import PacketReceived, Started, TimerFired, Transmit

MT = opt.MessageType
IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
MAC = bytes.fromhex("02aabbccddee")
SERVER_MAC = bytes.fromhex("02aabbcc0001")
CID = opt.client_id(7, opt.duid_ll(MAC))
SERVER, OTHER = IP("10.77.0.1"), IP("10.77.0.2")
ADDR = IP("10.77.0.50")
BCAST = IP("255.255.255.255")

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
SNAME_AT, FILE_AT = 44, 108  # offsets of the sname (64 bytes) and file (128 bytes) fields
SNAME_SIZE, FILE_SIZE = 64, 128
AREAS = ("options", "file", "sname")  # the order RFC 3396 reads them in
STATES = ("SELECTING", "REQUESTING", "PROBING", "BOUND", "RENEWING", "REBINDING")


# -- seeds: what a server really sends --------------------------------------------------


@dataclass
class Tlv:
    code: int
    value: bytes = b""
    length: int | None = None  # a lying length byte, when a mutation set one

    def wire(self) -> bytes:
        if self.code in (opt.PAD, opt.END):
            return bytes((self.code,))
        n = len(self.value) if self.length is None else self.length
        return bytes((self.code, n & 0xFF)) + self.value


@dataclass
class Draft:
    """A reply before it is bytes: the fixed header, the cookie and three option areas.

    ``areas["file"]``/``areas["sname"]`` are written over those fields when not None (the
    overload option says whether the decoder reads them), else ``file``/``sname`` hold text.
    """

    header: bytearray
    cookie: bytes = message.MAGIC_COOKIE
    areas: dict[str, list[Tlv] | None] = field(default_factory=dict)
    ends: dict[str, bool] = field(default_factory=dict)  # END closes the area
    trailer: bytes = b""  # after the options area's END (Ethernet padding and the like)

    def wire(self) -> bytes:
        head = bytearray(self.header)
        for name, at, size in (("sname", SNAME_AT, SNAME_SIZE), ("file", FILE_AT, FILE_SIZE)):
            tlvs = self.areas.get(name)
            if tlvs is not None:
                body = b"".join(t.wire() for t in tlvs)
                body += b"\xff" if self.ends.get(name, True) else b""
                head[at : at + size] = body[:size].ljust(size, b"\0")
        body = b"".join(t.wire() for t in self.areas["options"] or [])
        body += b"\xff" if self.ends.get("options", True) else b""
        return bytes(head) + self.cookie + body + self.trailer


def _pieces(rng: random.Random, code: int, value: bytes, split: bool) -> list[Tlv]:
    """``value`` as one TLV, as encode() cuts it (255-byte pieces), or cut anywhere (RFC 3396
    lets a server split any option)."""
    if len(value) <= 255 and not (split and len(value) > 1):
        return [Tlv(code, value)]
    cuts: list[int] = []
    if split and len(value) > 1:
        cuts = sorted(rng.sample(range(1, len(value)), min(len(value) - 1, rng.randint(1, 3))))
    bounds = [0, *cuts, len(value)]
    out = []
    for a, b in itertools.pairwise(bounds):
        out += [Tlv(code, value[i : min(i + 255, b)]) for i in range(a, b, 255)]
    return out


def _route_pool() -> list[bytes]:
    """Classless routes (RFC 3442) as servers send them, encoded once: a default route, then
    networks of every width through routers on the link."""
    rng = random.Random(0)
    pool = [opt.encode_classless_routes([(NET("0.0.0.0/0"), SERVER)])]
    for _ in range(400):
        net = NET((rng.getrandbits(32), rng.randint(1, 32)), strict=False)
        pool.append(opt.encode_classless_routes([(net, IP(f"10.77.0.{rng.randint(1, 254)}"))]))
    return pool


_ROUTES = _route_pool()
_MASKS = tuple(NET(f"0.0.0.0/{p}").netmask.packed for p in (8, 16, 20, 24, 24, 24, 28))
_ROUTERS = (SERVER.packed, SERVER.packed + OTHER.packed)
_DNS = b"".join(a.packed for a in (SERVER, IP("9.9.9.9"), IP("1.1.1.1"), IP("8.8.8.8")))
_LEASES = (60, 120, 300, 600, 3600, 86400, 604800)


def realistic_options(rng: random.Random, kind: MT, server: IP) -> list[tuple[int, bytes]]:
    """The options of a real OFFER, ACK or NAK from ``server`` (dnsmasq's and Kea's kind)."""
    out: list[tuple[int, bytes]] = [
        (opt.MESSAGE_TYPE, bytes((kind,))),
        (opt.SERVER_ID, server.packed),
    ]
    if rng.random() < 0.9:  # servers echo option 61; RFC 6842 says they must
        out.append((opt.CLIENT_ID, CID))
    if kind is MT.NAK:
        if rng.random() < 0.5:
            out.append((opt.MESSAGE, b"requested address not available"))
        return out
    lease = rng.choice(_LEASES) if rng.random() < 0.98 else 0xFFFFFFFF
    out.append((opt.LEASE_TIME, struct.pack("!I", lease)))
    if rng.random() < 0.7 and lease != 0xFFFFFFFF:
        out.append((opt.RENEWAL_TIME, struct.pack("!I", lease // 2)))
        out.append((opt.REBINDING_TIME, struct.pack("!I", lease * 7 // 8)))
    out.append((opt.SUBNET_MASK, rng.choice(_MASKS)))
    out.append((opt.ROUTER, rng.choice(_ROUTERS)))
    out.append((opt.DNS_SERVERS, _DNS[: 4 * rng.randint(1, 4)]))
    if rng.random() < 0.6:
        # now and then more than 255 bytes of routes, which RFC 3396 splits
        n = rng.choice((0, 1, 3, 10, 40))
        out.append((opt.CLASSLESS_ROUTES, _ROUTES[0] + b"".join(rng.sample(_ROUTES[1:], n))))
    if rng.random() < 0.7:
        out.append((opt.HOSTNAME, rng.choice((b"node17", b"job-4242.batch", b"x" * 300))))
    if rng.random() < 0.7:
        out.append((opt.DOMAIN_NAME, rng.choice((b"example.org", b"cluster.local\0"))))
    if rng.random() < 0.3:
        out.append((opt.INTERFACE_MTU, rng.choice((b"\x05\xdc", b"\x23\x28", b"\x05\x00"))))
    if rng.random() < 0.2:
        out.append((43, rng.randbytes(rng.randint(0, 20))))  # vendor-specific
    rest = out[2:]
    rng.shuffle(rest)
    return out[:2] + rest


def real_reply(
    rng: random.Random, xid: int, kind: MT, yiaddr: IP, server: IP
) -> tuple[Draft, dict[int, bytes]]:
    """A reply as a server would send it, laid out one of several legal ways, and the options
    a correct decoder must find in it."""
    # RFC 2131 figure 1, packed here rather than by the codec under test
    head = _HEADER.pack(
        message.BOOTREPLY,
        message.HTYPE_ETHER,
        len(MAC),
        0,
        xid,
        0,
        message.BROADCAST_FLAG if rng.random() < 0.2 else 0,
        bytes(4),
        (yiaddr if kind is not MT.NAK else message.ZERO).packed,
        server.packed if rng.random() < 0.3 else bytes(4),
        bytes(4),
        MAC,
        b"",
        b"",
    )
    draft = Draft(bytearray(head), areas={"options": [], "file": None, "sname": None})
    pairs = realistic_options(rng, kind, server)
    overload = rng.choice((0, 0, 0, 1, 2, 3))
    split = rng.random() < 0.3
    options = draft.areas["options"]
    assert options is not None
    if not overload:
        for code, value in pairs:
            options += _pieces(rng, code, value, split)
        if rng.random() < 0.3:
            draft.header[SNAME_AT : SNAME_AT + 12] = b"dhcp.example"
        if rng.random() < 0.3:
            draft.header[FILE_AT : FILE_AT + 10] = b"pxelinux.0"
        if rng.random() < 0.2:
            draft.trailer = b"\0" * rng.randint(1, 60)  # padding to a minimum size
    else:
        # the message type and server id stay in the options area, then the overload; each
        # other option's pieces go to the options area, file or sname, in that order (RFC
        # 3396 concatenates them so), wherever there is room; what fits nowhere stays whole
        # in the options area
        room = {"file": FILE_SIZE - 1 if overload & 1 else 0}
        room["sname"] = SNAME_SIZE - 1 if overload & 2 else 0
        for name in ("file", "sname"):
            if room[name]:
                draft.areas[name] = []
        options += [Tlv(c, v) for c, v in pairs[:2]] + [Tlv(opt.OVERLOAD, bytes((overload,)))]
        for code, value in pairs[2:]:
            pieces = _pieces(rng, code, value, split)
            left = dict(room)
            placed: list[str] | None = []
            floor = rng.randint(0, 1)
            for piece in pieces:
                for i in range(floor, 3):
                    name = AREAS[i]
                    if name == "options" or left[name] >= len(piece.value) + 2:
                        placed.append(name)
                        left[name] = left.get(name, 0) - len(piece.value) - 2
                        floor = i
                        break
                else:
                    placed = None
                    break
            if placed is None:
                placed = ["options"] * len(pieces)
            else:
                room = {k: v for k, v in left.items() if k != "options"}
            for name, piece in zip(placed, pieces, strict=True):
                area = draft.areas[name]
                assert area is not None
                area.append(piece)
    return draft, expected_options(draft)


def expected_options(draft: Draft) -> dict[int, bytes]:
    """What RFC 2131 and 3396 say the options are: every piece of a code, concatenated in the
    order options area, file, sname; option 52 itself not kept."""
    out: dict[int, bytes] = {}
    for name in ("options", "file", "sname"):
        for t in draft.areas.get(name) or []:
            if t.code not in (opt.PAD, opt.END, opt.OVERLOAD):
                out[t.code] = out.get(t.code, b"") + t.value
    return out


# -- mutations --------------------------------------------------------------------------

_U32_EDGES = (
    b"",
    b"\0\0\0",
    b"\0\0\0\0",
    b"\0\0\0\1",
    b"\0\0\0\2",
    b"\x7f\xff\xff\xff",
    b"\xff\xff\xff\xfe",
    b"\xff\xff\xff\xff",
    b"\0\0\0\0\0",
)
_ADDR_EDGES = (
    b"",
    b"\0\0\0",
    b"\0\0\0\0",
    b"\xff\xff\xff\xff",
    b"\x7f\0\0\1",
    b"\xe0\0\0\1",
    SERVER.packed,
    OTHER.packed,
    b"\x0a\x4d\0\x01\x0a",
)
_EDGES: dict[int, tuple[bytes, ...]] = {
    opt.SUBNET_MASK: (*_ADDR_EDGES, b"\xff\x00\xff\x00", b"\xff\xff\xff\xfe", b"\x80\0\0\0"),
    opt.ROUTER: (*_ADDR_EDGES, b"\0" * 8, b"\1" * 7),
    opt.DNS_SERVERS: (*_ADDR_EDGES, b"\1" * 400),
    opt.HOSTNAME: (b"", b"\0", b"a\0b", b"\x7f\x80\xff", b"x" * 255, b"y" * 600),
    opt.DOMAIN_NAME: (b"", b"\0\0", b"ex\x1bample", b"\xc3\xa9t\xc3\xa9"),
    opt.INTERFACE_MTU: (b"", b"\0", b"\0\0", b"\xff\xff", b"\0\x44", b"\5\xdc\0"),
    opt.LEASE_TIME: _U32_EDGES,
    opt.RENEWAL_TIME: _U32_EDGES,
    opt.REBINDING_TIME: _U32_EDGES,
    opt.OVERLOAD: (b"", b"\0", b"\1", b"\2", b"\3", b"\4", b"\1\2", b"\xff"),
    opt.MESSAGE_TYPE: (b"", b"\0", b"\2", b"\5", b"\6", b"\x09", b"\xff", b"\5\5"),
    opt.SERVER_ID: _ADDR_EDGES,
    opt.CLIENT_ID: (b"", CID[:-1], CID + b"\0", b"\1" + MAC, CID * 2),
    opt.CLASSLESS_ROUTES: (
        b"",
        b"\0",
        b"\x21" + b"\0" * 8,
        b"\x00\x0a\x4d\x00\x01",
        b"\x08\x0a\x0a\x4d\x00\x01",
        b"\x07\x0b\x0a\x4d\x00\x01",
        b"\x20\x0a\0\0\1\x0a\x4d\0\1",
        b"\x18\x0a\x01",
        b"\x00\x0a\x4d\x00\x01" * 60,
    ),
}
_CODES = (*_EDGES, opt.PAD, opt.END, 43, 56, 57, 60, 119, 250, 254)
_BYTES = (0, 1, 2, 3, 4, 5, 6, 0x20, 0x34, 0x35, 0x36, 0x3D, 0x79, 0x7F, 0x80, 0xFE, 0xFF)


def _all_tlvs(draft: Draft) -> list[tuple[list[Tlv], int]]:
    return [(a, i) for a in draft.areas.values() if a is not None for i in range(len(a))]


def mutate_draft(rng: random.Random, draft: Draft) -> str:
    """One option-level or header edit; returns its name (for the statistics)."""
    tlvs = _all_tlvs(draft)
    areas = [a for a in draft.areas.values() if a is not None]
    what = rng.randrange(16)
    if what < 8 and tlvs:
        area, i = rng.choice(tlvs)
        t = area[i]
        if what == 0:
            rng.choice(areas).insert(rng.randint(0, len(area)), Tlv(t.code, t.value, t.length))
            return "duplicate"
        if what == 1:
            del area[i]
            return "remove"
        if what == 2:
            if rng.random() < 0.5:
                t.value = t.value[: rng.randint(0, len(t.value))]
            else:
                t.value += rng.randbytes(rng.choice((1, 2, 3, 4, 255, 300)))
            return "resize"
        if what == 3:
            t.length = rng.choice(
                (0, 1, len(t.value) - 1, len(t.value) + 1, 255, rng.randrange(256))
            )
            return "lying length"
        if what == 4:
            t.code = rng.choice(_CODES)
            return "other code"
        if what in (5, 6):
            edges = _EDGES.get(t.code)
            t.value = rng.choice(edges) if edges else rng.randbytes(rng.randint(0, 8))
            return "edge value"
        del area[i]
        rng.choice(areas).insert(rng.randint(0, 5), t)
        return "moved"
    if what == 8:
        code = rng.choice(_CODES)
        edges = _EDGES.get(code, (b"", b"\0", b"\1\2\3\4"))
        rng.choice(areas).insert(rng.randint(0, 3), Tlv(code, rng.choice(edges)))
        return "new option"
    if what == 9:
        name = rng.choice(AREAS)
        draft.ends[name] = not draft.ends.get(name, True)
        return "END toggled"
    if what == 10:
        # overload appears, changes or goes: file and sname text read as options, or not read
        options = draft.areas["options"] or []
        options[:] = [t for t in options if t.code != opt.OVERLOAD]
        if rng.random() < 0.8:
            value = rng.choice(_EDGES[opt.OVERLOAD])
            options.insert(rng.randint(0, len(options)), Tlv(opt.OVERLOAD, value))
        return "overload changed"
    if what == 11:
        draft.trailer = rng.randbytes(rng.randint(1, 40))
        return "trailer"
    # the fixed header
    h = draft.header
    field_ = rng.randrange(8)
    if field_ == 0:
        h[16:20] = rng.choice(
            (
                b"\0\0\0\0",
                b"\xff\xff\xff\xff",
                b"\x7f\0\0\1",
                b"\xe0\0\0\1",
                OTHER.packed,
                rng.randbytes(4),
            )
        )  # yiaddr
    elif field_ == 1:
        h[0] = rng.choice((0, 1, 3, 255))  # op
    elif field_ == 2:
        h[2] = rng.choice((0, 5, 7, 16, 17, 255))  # hlen
    elif field_ == 3:
        h[1] = rng.choice((0, 6, 255))  # htype
    elif field_ == 4:
        h[4 + rng.randrange(4)] ^= 1 << rng.randrange(8)  # xid
    elif field_ == 5:
        h[28 + rng.randrange(16)] ^= 1 << rng.randrange(8)  # chaddr and its padding
    elif field_ == 6:
        at = rng.choice((SNAME_AT, FILE_AT))
        h[at : at + 8] = rng.randbytes(8)
    else:
        h[8:12] = rng.randbytes(4)  # secs, flags
    return "header"


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One byte-level edit, mostly in the options (so the cookie usually survives)."""
    b = bytearray(data)
    r = rng.random()
    lo = message.MIN_SIZE if r < 0.75 or len(b) <= message.MIN_SIZE else 0
    lo = min(lo, len(b))
    at = rng.randint(lo, max(lo, len(b) - 1))
    what = rng.randrange(7)
    if what == 0 and b:
        at = min(at, len(b) - 1)
        b[at] ^= 1 << rng.randrange(8)
        return bytes(b), "bit flip"
    if what == 1 and b:
        at = min(at, len(b) - 1)
        b[at] = rng.choice(_BYTES)
        return bytes(b), "interesting byte"
    if what == 2:
        b[at:at] = rng.randbytes(rng.choice((1, 2, 4, 16)))
        return bytes(b), "insertion"
    if what == 3:
        del b[at : at + rng.choice((1, 2, 4, 16))]
        return bytes(b), "deletion"
    if what == 4:
        n = rng.choice((2, 4, 8, 32))
        b[at:at] = b[at : at + n]
        return bytes(b), "duplicated span"
    if what == 5:
        return bytes(b[:at]), "truncation"
    if rng.random() < 0.1:
        return bytes(b[: rng.randrange(message.MIN_SIZE + 1)]), "short truncation"
    return bytes(b) + rng.randbytes(rng.randint(1, 20)), "appended"


def fuzzed(rng: random.Random, draft: Draft, tally: Counter[str]) -> tuple[bytes, bool]:
    """``draft`` with a few mutations, and whether it has none (now and then: the real reply
    itself)."""
    n = 0 if rng.random() < 0.03 else min(1 + int(rng.expovariate(0.8)), 8)
    byte_edits = 0
    for _ in range(n):
        if rng.random() < 0.6:
            tally[mutate_draft(rng, draft)] += 1
        else:
            byte_edits += 1
    data = draft.wire()
    for _ in range(byte_edits):
        data, name = mutate_bytes(rng, data)
        tally[name] += 1
    return data, n == 0


def fuzzed_frame(rng: random.Random, payload: bytes) -> tuple[bytes, bool]:
    """A real frame around ``payload`` as a server sends it, then (mostly) broken: header
    bytes, lengths, IP options, truncation, padding; the checksums made right again half the
    time, so the later checks see it. Returns (frame, whether it is unmutated)."""
    dst = rng.choice((BCAST, ADDR))
    f = bytearray(
        frame.build_udp(
            payload,
            SERVER_MAC,
            SERVER,
            dst,
            dst_mac=MAC,
            src_port=67,
            dst_port=68,
            ident=rng.getrandbits(16),
        )
    )
    if rng.random() < 0.1:
        return bytes(f), True
    for _ in range(1 + int(rng.expovariate(1.0))):
        what = rng.randrange(6)
        if what == 0 and len(f) > 42:
            f[rng.randrange(42)] = rng.choice(_BYTES)  # Ethernet, IP and UDP headers
        elif what == 1 and len(f) > 42:
            at = rng.choice((16, 38))  # IP total length, UDP length
            f[at : at + 2] = struct.pack(
                "!H", rng.choice((0, 7, 8, 19, 20, 28, len(f) - 14, len(f) - 13, 0xFFFF))
            )
        elif what == 2 and len(f) > 42:
            f[14] = 0x40 | rng.choice((0, 4, 5, 6, 15))  # IHL
            if rng.random() < 0.5:
                f[34:34] = b"\x01" * 4  # an IP option (NOP x 4) with the IHL it needs
                f[14] = 0x46
                f[16:18] = struct.pack("!H", len(f) - 14)
        elif what == 3:
            del f[rng.randrange(len(f) + 1) :]
        elif what == 4:
            f += b"\0" * rng.randint(1, 60)
        elif len(f):
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.5 and len(f) >= 34:
        ihl = max(20, min(60, (f[14] & 0xF) * 4))
        if len(f) >= 14 + ihl:
            f[24:26] = b"\0\0"
            f[24:26] = struct.pack("!H", frame.checksum(bytes(f[14 : 14 + ihl])))
            if rng.random() < 0.5 and len(f) >= 14 + ihl + 8:
                f[14 + ihl + 6 : 14 + ihl + 8] = b"\0\0"  # "no UDP checksum"
    return bytes(f), False


# -- the run: a client driven through its states, fuzzed replies in each ----------------


@dataclass(frozen=True)
class Failure:
    invariant: str
    where: str  # what tells one bug from another: the exception, the state change
    detail: str
    state: str  # the client's state when it got the input
    data: bytes  # the input (a payload, or a frame for parse_udp)
    session: int  # run_session(session, per_state) replays it

    @property
    def key(self) -> str:
        return f"{self.invariant} ({self.where})"


@dataclass
class Result:
    inputs: int = 0  # fuzzed payloads, each through decode, encode and Client.handle
    cookie: int = 0  # still carried the magic cookie where it belongs
    decoded: int = 0  # decode returned a Message
    reached: int = 0  # ... for this client's exchange: its xid, chaddr, client id, a server id
    accepted: int = 0  # Client.handle returned actions (it took the reply)
    frames: int = 0  # fuzzed frames through frame.parse_udp
    frames_parsed: int = 0  # parse_udp returned a payload
    timers: int = 0  # TimerFired at next_deadline, between the packets
    sessions: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    reached_by_state: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)  # the first of each kind
    failure_counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def fail(self, failure: Failure) -> None:
        key = failure.key
        if not self.failure_counts[key]:
            self.failures.append(failure)
        self.failure_counts[key] += 1


_KINDS = {
    "SELECTING": ((MT.OFFER, MT.ACK, MT.NAK), (0.8, 0.1, 0.1)),
    None: ((MT.ACK, MT.NAK, MT.OFFER), (0.7, 0.15, 0.15)),
}
_DELAYS = (0.0, 0.001, 0.01, 0.05, 0.2, 0.5, 1.0, 3.0)
# how a peer moves the client from a state towards a target (None: any other target)
_STEER: dict[tuple[str, str | None], str] = {
    ("INIT", None): "timer",
    ("SELECTING", None): "offer",
    ("REQUESTING", "SELECTING"): "nak",
    ("REQUESTING", None): "ack",
    ("REBOOTING", "SELECTING"): "nak",
    ("REBOOTING", None): "ack",
    ("PROBING", None): "timer",  # the RFC 5227 probe runs its course (nobody answers)
    ("BOUND", None): "timer",
    ("RENEWING", "SELECTING"): "nak",
    ("RENEWING", "REQUESTING"): "nak",
    ("RENEWING", "BOUND"): "ack",
    ("RENEWING", None): "timer",
    ("REBINDING", "SELECTING"): "nak",
    ("REBINDING", "REQUESTING"): "nak",
    ("REBINDING", None): "ack",
}


def _origin(exc: BaseException) -> str:
    """The exception's type and the line that raised it: one bug, however often it is hit."""
    tb = traceback.extract_tb(exc.__traceback__)
    return (
        f"{type(exc).__name__} at {tb[-1].filename}:{tb[-1].lineno}" if tb else type(exc).__name__
    )


def _diff(a: message.Message, b: message.Message) -> str:
    """The fields two messages differ in."""
    return ", ".join(k for k in a.__dataclass_fields__ if getattr(a, k) != getattr(b, k))


def make_client(seed: int) -> Client:
    return Client(Config(chaddr=MAC, client_id=CID), rng=random.Random(seed))


class Session:
    """One client, from Started through SELECTING, REQUESTING, BOUND, RENEWING and REBINDING,
    with ``per_state`` fuzzed replies in each. Real replies (from a peer that answers what the
    client last sent: OFFER, ACK, or NAK to send it back to SELECTING) and timers move it; a
    fuzzed reply it takes moves it too, and is steered back the same way."""

    def __init__(self, seed: int, result: Result, per_state: int) -> None:
        self.seed, self.result, self.per_state = seed, result, per_state
        self.rng = random.Random(seed)
        self.client = make_client(seed)
        self.now = self.rng.uniform(0, 1e6)
        self.last: Transmit | None = None
        self.alive = True
        self.budget = 0

    @property
    def state(self) -> str:
        return self.client.state.name

    def run(self, budget: int) -> int:
        """Feed up to ``budget`` fuzzed replies; returns how many were fed."""
        self.budget = budget
        self.result.sessions += 1
        self.handle(Started(self.now))
        for target in STATES:
            # ``per_state`` fuzzed replies in ``target``; one the client takes moves it on,
            # and real replies and timers bring it back
            for _ in range(self.per_state):
                if not self.alive or self.budget <= 0 or not self.advance(target):
                    break
                self.feed()
        return budget - self.budget

    # -- one input ----------------------------------------------------------------------

    def feed(self) -> None:
        rng, result = self.rng, self.result
        self.wait(rng.choice(_DELAYS))
        state = self.state
        if not self.alive or self.last is None or state == "STOPPED":
            return
        kinds, weights = _KINDS.get(state, _KINDS[None])
        kind = rng.choices(kinds, weights)[0]
        draft, expected = real_reply(rng, self.last.message.xid, kind, *self.answer())
        data, clean = fuzzed(rng, draft, result.mutations)
        self.budget -= 1
        result.inputs += 1
        result.by_state[state] += 1
        result.cookie += data[message.HEADER_SIZE : message.MIN_SIZE] == message.MAGIC_COOKIE
        msg = self.check_codec(data, state)
        if msg is not None and clean and dict(msg.options) != expected:
            self.fail(
                "a real reply decodes to other options", kind.name, f"{dict(msg.options)}", data
            )
        if msg is not None and self.for_this_exchange(msg, state):
            result.reached += 1
            result.reached_by_state[state] += 1
        actions = self.handle(PacketReceived(self.now, data), data)
        if actions:
            result.accepted += 1
        self.check_frame(data)

    def check_codec(self, data: bytes, state: str) -> message.Message | None:
        try:
            msg = message.decode(data)
        except MalformedMessage:
            return None
        except Exception as exc:
            self.fail("decode raised", _origin(exc), f"{type(exc).__name__}: {exc}", data, state)
            return None
        if not isinstance(msg, message.Message):
            self.fail("decode returned no Message", type(msg).__name__, repr(msg), data, state)
            return None
        self.result.decoded += 1
        try:
            again = message.decode(message.encode(msg))
        except Exception as exc:
            self.fail("encode(decode(x)) raised", _origin(exc), repr(exc), data, state)
            return msg
        if again != msg:
            self.fail(
                "round trip changed the message",
                _diff(msg, again),
                f"{msg} != {again}",
                data,
                state,
            )
        return msg

    def for_this_exchange(self, msg: message.Message, state: str) -> bool:
        """What the client checks before its acceptance logic (it keeps no exchange once
        BOUND): a reply, its xid, its chaddr, its client id if any, a 4-byte server id."""
        assert self.last is not None
        return (
            state not in ("BOUND", "INIT", "STOPPED")
            and msg.op == message.BOOTREPLY
            and msg.xid == self.last.message.xid
            and msg.chaddr == MAC
            and msg.options.get(opt.CLIENT_ID, CID) == CID
            and len(msg.options.get(opt.SERVER_ID, b"")) == 4
        )

    def check_frame(self, payload: bytes) -> None:
        rng = self.rng
        f, clean = fuzzed_frame(rng, payload)
        self.result.frames += 1
        try:
            out = frame.parse_udp(f, check_udp=rng.random() < 0.9)
        except Exception as exc:
            self.fail("parse_udp raised", _origin(exc), f"{type(exc).__name__}: {exc}", f)
            return
        if out is not None and not isinstance(out, bytes):
            self.fail("parse_udp returned neither bytes nor None", type(out).__name__, repr(out), f)
        elif out is not None:
            self.result.frames_parsed += 1
        if clean and out != payload:
            self.fail("a real frame does not parse back to its payload", "", repr(out), f)

    # -- the client, the clock and the peer ---------------------------------------------

    def handle(self, event: Started | PacketReceived | TimerFired, data: bytes = b"") -> list:
        state = self.state
        try:
            actions = self.client.handle(event)
        except Exception as exc:
            what = type(event).__name__
            detail = f"{type(exc).__name__}: {exc}"
            self.fail(f"Client.handle({what}) raised", _origin(exc), detail, data, state)
            self.alive = False
            return []
        deadline = self.client.next_deadline
        if deadline is not None and (math.isnan(deadline) or deadline < event.now):
            detail = f"next_deadline {deadline} < now {event.now}"
            where = f"{type(event).__name__} in {state} -> {self.state}"
            self.fail("next_deadline in the past", where, detail, data, state)
        for action in actions:
            if isinstance(action, Transmit):
                self.last = action
        return actions

    def wait(self, delay: float) -> None:
        """Let ``delay`` seconds pass, firing the timer at each deadline on the way (a driver
        wakes at the earlier of its deadline and the next packet)."""
        until = self.now + delay
        for _ in range(1000):
            deadline = self.client.next_deadline
            if not self.alive or deadline is None or not deadline <= until:
                break
            self.fire()
        else:
            self.fail("the timer never settles", self.state, f"next_deadline {deadline}", b"")
            self.alive = False
        self.now = max(self.now, until)

    def fire(self) -> None:
        deadline = self.client.next_deadline
        assert deadline is not None
        self.now = max(self.now, deadline)  # a deadline in the past fires at once
        self.result.timers += 1
        self.handle(TimerFired(self.now))

    def answer(self) -> tuple[IP, IP]:
        """(yiaddr, server) of a real server's reply to what the client last sent: the offered
        address to a DISCOVER, the requested one (or ciaddr) to a REQUEST, from the server
        it names, or the one it unicasts to, or any while it broadcasts."""
        assert self.last is not None
        m, dest = self.last.message, self.last.dest
        if m.message_type is not MT.REQUEST:
            return ADDR, SERVER
        requested = m.options.get(opt.REQUESTED_ADDRESS, b"")
        yiaddr = IP(requested) if len(requested) == 4 else m.ciaddr
        server_id = m.options.get(opt.SERVER_ID, b"")
        if len(server_id) == 4:
            return yiaddr, IP(server_id)
        return yiaddr, dest if dest != BCAST else self.rng.choice((SERVER, OTHER))

    def advance(self, target: str) -> bool:
        """Real replies and timers until the client is in ``target``; False if it cannot be
        (stopped, an infinite lease, a lease a fuzzed reply made that cannot be renewed)."""
        for _ in range(60):
            state = self.state
            if not self.alive or state == "STOPPED" or self.last is None:
                return False
            if state == target:
                return True
            step = _STEER.get((state, target)) or _STEER.get((state, None))
            if step == "timer":
                deadline = self.client.next_deadline
                if deadline is None or not math.isfinite(deadline):
                    return False
                self.fire()
                continue
            self.wait(self.rng.choice(_DELAYS[:5]))
            if self.state != state or self.last is None:
                continue
            kind = {"offer": MT.OFFER, "ack": MT.ACK, "nak": MT.NAK}[step or "ack"]
            draft, _ = real_reply(self.rng, self.last.message.xid, kind, *self.answer())
            self.handle(PacketReceived(self.now, draft.wire()))
        return False

    def fail(
        self, invariant: str, where: str, detail: str, data: bytes, state: str | None = None
    ) -> None:
        self.result.fail(Failure(invariant, where, detail, state or self.state, data, self.seed))


def run(inputs: int, seed: int = 1, per_state: int = 10) -> Result:
    """``inputs`` fuzzed replies over as many sessions as it takes; deterministic per seed."""
    result = Result()
    master = random.Random(seed)
    start = time.perf_counter()
    while result.inputs < inputs:
        Session(master.getrandbits(32), result, per_state).run(inputs - result.inputs)
    result.seconds = time.perf_counter() - start
    return result


def run_session(session: int, per_state: int = 10, budget: int = 10**6) -> Result:
    """One session again, by the number a Failure carries."""
    result = Result()
    start = time.perf_counter()
    Session(session, result, per_state).run(budget)
    result.seconds = time.perf_counter() - start
    return result


def report(result: Result, show: int = 10) -> str:
    """The figures, one per line, then each kind of failure with its first input."""
    n = max(result.inputs, 1)
    lines = [
        f"inputs run: {result.inputs} fuzzed replies over {result.sessions} client sessions,"
        f" and {result.frames} fuzzed frames, in {result.seconds:.1f} s"
        f" ({result.inputs / max(result.seconds, 1e-9):,.0f} replies/s)",
        f"carried the magic cookie: {result.cookie / n:.1%}",
        f"decoded: {result.decoded / n:.1%} (the rest raised MalformedMessage)",
        f"reached the client's acceptance logic: {result.reached / n:.1%}"
        " (its xid, chaddr and client id, and a server id)",
        f"taken by the client: {result.accepted / n:.1%}",
        f"frames parsed by parse_udp: {result.frames_parsed / max(result.frames, 1):.1%}",
        f"timers fired between replies: {result.timers}",
        "replies per state (share that reached): "
        + ", ".join(
            f"{s} {n_s} ({result.reached_by_state[s] / max(n_s, 1):.0%})"
            for s, n_s in sorted(result.by_state.items())
        ),
        "mutations: " + ", ".join(f"{k} {v}" for k, v in result.mutations.most_common()),
        f"failures: {sum(result.failure_counts.values())} ({len(result.failure_counts)} kinds)",
    ]
    for failure in result.failures[:show]:
        lines += [
            f"  FAIL {failure.key}: {result.failure_counts[failure.key]} inputs; the first"
            f" in {failure.state}, session {failure.session}",
            f"    {failure.detail[:400]}",
            f"    input: {failure.data.hex()}",
        ]
    return "\n".join(lines)
