"""DHCPv6 options (RFC 8415 section 21, RFC 3646): the codes, one frozen class per option a
client reads or writes, and the TLV codec with its bounds.

Every option is ``option-code`` (16 bits), ``option-len`` (16 bits) and its data (RFC 8415
section 21.1). Unless the RFC says otherwise an option appears at most once where it
appears, and repeated options are never joined (section 21); IA_NA and IAADDR may repeat.
Options a client has no use for are kept as ``Unknown`` bytes, never looked into. Where
each known option may appear is the table ``WHERE`` (RFC 8415 appendix C): IAADDR only in
an IA_NA, a status code in the message, an IA_NA or an IAADDR, nothing else inside
another option. That table is the nesting limit: no option nests deeper than
message -> IA_NA -> IAADDR -> STATUS_CODE, whatever the bytes say.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import ClassVar

from .errors import MalformedMessage

CLIENTID = 1
SERVERID = 2
IA_NA = 3
IA_TA = 4
IAADDR = 5
ORO = 6
PREFERENCE = 7
ELAPSED_TIME = 8
RELAY_MSG = 9
AUTH = 11
UNICAST = 12
STATUS_CODE = 13
RAPID_COMMIT = 14
VENDOR_OPTS = 17
INTERFACE_ID = 18
RECONF_MSG = 19
RECONF_ACCEPT = 20
DNS_SERVERS = 23  # RFC 3646 section 3
DOMAIN_LIST = 24  # RFC 3646 section 4
IA_PD = 25
IAPREFIX = 26
SOL_MAX_RT = 82  # RFC 8415 section 21.24

INFINITY = 0xFFFFFFFF  # RFC 8415 section 7.7: a lifetime (or T1/T2) that never ends
MAX_DUID_SIZE = 130  # section 11.1: a 2-octet type and at most 128 octets
MAX_OPTIONS = 64  # in one message, nested ones counted: a client's reply holds a dozen
MAX_NAME_SIZE = 255  # RFC 1035 section 2.3.4, wire form
MAX_LABEL_SIZE = 63


class MessageType(IntEnum):
    """RFC 8415 section 7.3. 12 and 13 are relay messages, never for a client."""

    SOLICIT = 1
    ADVERTISE = 2
    REQUEST = 3
    CONFIRM = 4
    RENEW = 5
    REBIND = 6
    REPLY = 7
    RELEASE = 8
    DECLINE = 9
    RECONFIGURE = 10
    INFORMATION_REQUEST = 11
    RELAY_FORW = 12
    RELAY_REPL = 13


class Status(IntEnum):
    """RFC 8415 section 21.13 and 7.5."""

    SUCCESS = 0
    UNSPEC_FAIL = 1
    NO_ADDRS_AVAIL = 2
    NO_BINDING = 3
    NOT_ON_LINK = 4
    USE_MULTICAST = 5
    NO_PREFIX_AVAIL = 6


class Scope(Enum):
    """Where an option sits: the message's options or those of an IA_NA or an IAADDR."""

    MESSAGE = "the message"
    IA_NA = "an IA_NA"
    IAADDR = "an IAADDR"


# -- the options ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClientId:
    duid: bytes
    code: ClassVar[int] = CLIENTID

    def value(self) -> bytes:
        return self.duid


@dataclass(frozen=True)
class ServerId:
    duid: bytes
    code: ClassVar[int] = SERVERID

    def value(self) -> bytes:
        return self.duid


@dataclass(frozen=True)
class IaAddress:
    """IAADDR (section 21.6): an address, its lifetimes in seconds, and its own options."""

    address: ipaddress.IPv6Address
    preferred: int = 0
    valid: int = 0
    options: tuple[Option, ...] = ()
    code: ClassVar[int] = IAADDR

    def value(self) -> bytes:
        head = self.address.packed + struct.pack("!II", self.preferred, self.valid)
        return head + encode_options(self.options)


@dataclass(frozen=True)
class IaNa:
    """IA_NA (section 21.4): an identity association for non-temporary addresses."""

    iaid: int
    t1: int = 0
    t2: int = 0
    options: tuple[Option, ...] = ()
    code: ClassVar[int] = IA_NA

    def value(self) -> bytes:
        return struct.pack("!III", self.iaid, self.t1, self.t2) + encode_options(self.options)

    @property
    def addresses(self) -> tuple[IaAddress, ...]:
        return tuple(o for o in self.options if isinstance(o, IaAddress))

    @property
    def status(self) -> StatusCode | None:
        return next((o for o in self.options if isinstance(o, StatusCode)), None)


@dataclass(frozen=True)
class OptionRequest:
    """ORO (section 21.7): the option codes the client asks for."""

    codes: tuple[int, ...]
    code: ClassVar[int] = ORO

    def value(self) -> bytes:
        return b"".join(struct.pack("!H", c) for c in self.codes)


@dataclass(frozen=True)
class Preference:
    """Section 21.8: 0-255; 255 makes a client take that server at once (18.2.1)."""

    preference: int
    code: ClassVar[int] = PREFERENCE

    def value(self) -> bytes:
        return bytes((self.preference,))


@dataclass(frozen=True)
class ElapsedTime:
    """Section 21.9: hundredths of a second since the exchange began, 0xffff at most."""

    centiseconds: int
    code: ClassVar[int] = ELAPSED_TIME

    def value(self) -> bytes:
        return struct.pack("!H", self.centiseconds)


@dataclass(frozen=True)
class Auth:
    """Section 21.11: kept as bytes (protocol, algorithm, RDM, replay detection, info); Lark
    authenticates nothing, so a Reconfigure is never trusted."""

    data: bytes
    code: ClassVar[int] = AUTH

    def value(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class Unicast:
    """Section 21.12: parsed, then ignored (the client always multicasts)."""

    address: ipaddress.IPv6Address
    code: ClassVar[int] = UNICAST

    def value(self) -> bytes:
        return self.address.packed


@dataclass(frozen=True)
class StatusCode:
    """Section 21.13: a status and a UTF-8 message, kept as bytes (``text`` prints it)."""

    status: int
    message: bytes = b""
    code: ClassVar[int] = STATUS_CODE

    def value(self) -> bytes:
        return struct.pack("!H", self.status) + self.message

    @property
    def text(self) -> str:
        """The message with everything but printable ASCII replaced: it may reach a log."""
        return "".join(chr(b) if 32 <= b < 127 else "?" for b in self.message[:200])

    @property
    def name(self) -> str:
        try:
            return Status(self.status).name
        except ValueError:
            return f"status {self.status}"


@dataclass(frozen=True)
class RapidCommit:
    code: ClassVar[int] = RAPID_COMMIT

    def value(self) -> bytes:
        return b""


@dataclass(frozen=True)
class ReconfigureMessage:
    """Section 21.19: which message a Reconfigure asks for (Renew, Rebind, Info-request)."""

    msg_type: int
    code: ClassVar[int] = RECONF_MSG

    def value(self) -> bytes:
        return bytes((self.msg_type,))


@dataclass(frozen=True)
class ReconfigureAccept:
    code: ClassVar[int] = RECONF_ACCEPT

    def value(self) -> bytes:
        return b""


@dataclass(frozen=True)
class DnsServers:
    """RFC 3646 section 3: recursive name servers, in the server's order of preference."""

    addresses: tuple[ipaddress.IPv6Address, ...]
    code: ClassVar[int] = DNS_SERVERS

    def value(self) -> bytes:
        return b"".join(a.packed for a in self.addresses)


@dataclass(frozen=True)
class DomainList:
    """RFC 3646 section 4: the search list, RFC 1035 names without compression (RFC 8415
    section 10). Names are text without the final dot; a label is printable ASCII."""

    names: tuple[str, ...]
    code: ClassVar[int] = DOMAIN_LIST

    def value(self) -> bytes:
        return b"".join(encode_name(n) for n in self.names)


@dataclass(frozen=True)
class SolMaxRt:
    """Section 21.24: the server's SOL_MAX_RT, in seconds (60-86400 to be used)."""

    seconds: int
    code: ClassVar[int] = SOL_MAX_RT

    def value(self) -> bytes:
        return struct.pack("!I", self.seconds)


@dataclass(frozen=True)
class Unknown:
    """Any other option: its code and its bytes, unread."""

    code: int
    data: bytes = b""

    def value(self) -> bytes:
        return self.data


Option = (
    ClientId
    | ServerId
    | IaNa
    | IaAddress
    | OptionRequest
    | Preference
    | ElapsedTime
    | Auth
    | Unicast
    | StatusCode
    | RapidCommit
    | ReconfigureMessage
    | ReconfigureAccept
    | DnsServers
    | DomainList
    | SolMaxRt
    | Unknown
)


# -- encoding ------------------------------------------------------------------------


def encode_options(options: tuple[Option, ...]) -> bytes:
    out = bytearray()
    for o in options:
        value = o.value()
        if len(value) > 0xFFFF:
            raise ValueError(f"option {o.code} is {len(value)} bytes, over 65535")
        out += struct.pack("!HH", o.code, len(value)) + value
    return bytes(out)


def encode_name(name: str) -> bytes:
    """RFC 1035 section 3.1: length-prefixed labels and the root's zero octet."""
    labels = name.removesuffix(".").split(".")
    out = bytearray()
    for label in labels:
        raw = label.encode("ascii")
        if not 0 < len(raw) <= MAX_LABEL_SIZE:
            raise ValueError(f"label {label!r} of {name!r} is not 1-63 octets")
        out += bytes((len(raw),)) + raw
    out.append(0)
    if len(out) > MAX_NAME_SIZE:
        raise ValueError(f"{name!r} is over 255 octets")
    return bytes(out)


# -- decoding ------------------------------------------------------------------------


class _Budget:
    """Options left to read in one message (MAX_OPTIONS, nested ones counted)."""

    def __init__(self) -> None:
        self.left = MAX_OPTIONS

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise MalformedMessage(f"more than {MAX_OPTIONS} options")


def _exact(data: bytes, size: int, name: str) -> None:
    if len(data) != size:
        raise MalformedMessage(f"{name} must be {size} bytes, not {len(data)}")


def check_duid(data: bytes, name: str) -> bytes:
    """Section 11: 2 to 130 octets. Types 1-4 are checked for their own fixed parts (11.2
    LLT: type, hardware type, time, address; 11.3 EN: enterprise number and an id; 11.4
    LL: hardware type and address; RFC 6355 UUID: exactly 16 octets); any other type is
    opaque (section 11: a DUID is only ever compared)."""
    if not 2 < len(data) <= MAX_DUID_SIZE:
        raise MalformedMessage(f"{name} DUID of {len(data)} bytes (3-130)")
    kind = int.from_bytes(data[:2], "big")
    least = {1: 9, 2: 7, 3: 5}.get(kind)
    if kind == 4 and len(data) != 18:
        raise MalformedMessage(f"{name} DUID-UUID of {len(data)} bytes, not 18")
    if least is not None and len(data) < least:
        raise MalformedMessage(f"{name} DUID type {kind} of {len(data)} bytes is too short")
    return data


def _u32s(data: bytes, count: int) -> tuple[int, ...]:
    return struct.unpack_from(f"!{count}I", data)


def _client_id(data: bytes, budget: _Budget) -> ClientId:
    return ClientId(check_duid(data, "CLIENTID"))


def _server_id(data: bytes, budget: _Budget) -> ServerId:
    return ServerId(check_duid(data, "SERVERID"))


def _ia_na(data: bytes, budget: _Budget) -> IaNa:
    if len(data) < 12:
        raise MalformedMessage(f"IA_NA of {len(data)} bytes is shorter than 12")
    iaid, t1, t2 = _u32s(data, 3)
    return IaNa(iaid, t1, t2, decode_options(data[12:], Scope.IA_NA, budget))


def _ia_address(data: bytes, budget: _Budget) -> IaAddress:
    if len(data) < 24:
        raise MalformedMessage(f"IAADDR of {len(data)} bytes is shorter than 24")
    preferred, valid = _u32s(data[16:], 2)
    address = ipaddress.IPv6Address(data[:16])
    return IaAddress(address, preferred, valid, decode_options(data[24:], Scope.IAADDR, budget))


def _oro(data: bytes, budget: _Budget) -> OptionRequest:
    if len(data) % 2:
        raise MalformedMessage(f"ORO of {len(data)} bytes is not a list of codes")
    return OptionRequest(struct.unpack(f"!{len(data) // 2}H", data))


def _preference(data: bytes, budget: _Budget) -> Preference:
    _exact(data, 1, "PREFERENCE")
    return Preference(data[0])


def _elapsed(data: bytes, budget: _Budget) -> ElapsedTime:
    _exact(data, 2, "ELAPSED_TIME")
    return ElapsedTime(int.from_bytes(data, "big"))


def _auth(data: bytes, budget: _Budget) -> Auth:
    if len(data) < 11:  # protocol, algorithm, RDM, 8 octets of replay detection
        raise MalformedMessage(f"AUTH of {len(data)} bytes is shorter than 11")
    return Auth(data)


def _unicast(data: bytes, budget: _Budget) -> Unicast:
    _exact(data, 16, "UNICAST")
    return Unicast(ipaddress.IPv6Address(data))


def _status(data: bytes, budget: _Budget) -> StatusCode:
    if len(data) < 2:
        raise MalformedMessage(f"STATUS_CODE of {len(data)} bytes is shorter than 2")
    return StatusCode(int.from_bytes(data[:2], "big"), data[2:])


def _rapid_commit(data: bytes, budget: _Budget) -> RapidCommit:
    _exact(data, 0, "RAPID_COMMIT")
    return RapidCommit()


def _reconf_accept(data: bytes, budget: _Budget) -> ReconfigureAccept:
    _exact(data, 0, "RECONF_ACCEPT")
    return ReconfigureAccept()


def _reconf_msg(data: bytes, budget: _Budget) -> ReconfigureMessage:
    _exact(data, 1, "RECONF_MSG")
    if data[0] not in (MessageType.RENEW, MessageType.REBIND, MessageType.INFORMATION_REQUEST):
        raise MalformedMessage(f"RECONF_MSG asks for message type {data[0]}")
    return ReconfigureMessage(data[0])


def _dns(data: bytes, budget: _Budget) -> DnsServers:
    if len(data) % 16:
        raise MalformedMessage(f"DNS_SERVERS of {len(data)} bytes is not a list of addresses")
    return DnsServers(
        tuple(ipaddress.IPv6Address(data[i : i + 16]) for i in range(0, len(data), 16))
    )


def decode_names(data: bytes) -> tuple[str, ...]:
    """RFC 1035 section 3.1 names, back to back, no compression (RFC 8415 section 10)."""
    names, i = [], 0
    while i < len(data):
        labels: list[str] = []
        size = 1  # the root's zero octet
        while True:
            if i >= len(data):
                raise MalformedMessage("a domain name runs past the end of DOMAIN_LIST")
            n = data[i]
            if n == 0:
                i += 1
                break
            if n > MAX_LABEL_SIZE:  # 0xc0 and up is a compression pointer
                raise MalformedMessage(f"a compression pointer or a {n}-octet label")
            label = data[i + 1 : i + 1 + n]
            if len(label) < n:
                raise MalformedMessage("a domain label runs past the end of DOMAIN_LIST")
            if any(not 0x21 <= b < 0x7F or b == 0x2E for b in label):
                raise MalformedMessage("a domain label with a dot or a byte that is not text")
            size += 1 + n
            if size > MAX_NAME_SIZE:
                raise MalformedMessage("a domain name over 255 octets")
            labels.append(label.decode("ascii"))
            i += 1 + n
        if not labels:
            raise MalformedMessage("the root as a search domain")
        names.append(".".join(labels))
    return tuple(names)


def _domains(data: bytes, budget: _Budget) -> DomainList:
    return DomainList(decode_names(data))


def _sol_max_rt(data: bytes, budget: _Budget) -> SolMaxRt:
    _exact(data, 4, "SOL_MAX_RT")
    return SolMaxRt(int.from_bytes(data, "big"))


_Parser = Callable[[bytes, _Budget], Option]
_M, _IA, _A = Scope.MESSAGE, Scope.IA_NA, Scope.IAADDR

# code -> (its name, its parser, where it may appear: RFC 8415 appendix C)
WHERE: dict[int, tuple[str, _Parser, frozenset[Scope]]] = {
    CLIENTID: ("CLIENTID", _client_id, frozenset({_M})),
    SERVERID: ("SERVERID", _server_id, frozenset({_M})),
    IA_NA: ("IA_NA", _ia_na, frozenset({_M})),
    IAADDR: ("IAADDR", _ia_address, frozenset({_IA})),
    ORO: ("ORO", _oro, frozenset({_M})),
    PREFERENCE: ("PREFERENCE", _preference, frozenset({_M})),
    ELAPSED_TIME: ("ELAPSED_TIME", _elapsed, frozenset({_M})),
    RELAY_MSG: ("RELAY_MSG", _auth, frozenset()),  # relay messages only
    AUTH: ("AUTH", _auth, frozenset({_M})),
    UNICAST: ("UNICAST", _unicast, frozenset({_M})),
    STATUS_CODE: ("STATUS_CODE", _status, frozenset({_M, _IA, _A})),
    RAPID_COMMIT: ("RAPID_COMMIT", _rapid_commit, frozenset({_M})),
    INTERFACE_ID: ("INTERFACE_ID", _auth, frozenset()),  # relay messages only
    RECONF_MSG: ("RECONF_MSG", _reconf_msg, frozenset({_M})),
    RECONF_ACCEPT: ("RECONF_ACCEPT", _reconf_accept, frozenset({_M})),
    DNS_SERVERS: ("DNS_SERVERS", _dns, frozenset({_M})),
    DOMAIN_LIST: ("DOMAIN_LIST", _domains, frozenset({_M})),
    SOL_MAX_RT: ("SOL_MAX_RT", _sol_max_rt, frozenset({_M})),
}
# Section 21: these may appear more than once (each a separate instance); every other known
# option at most once in one place. Options we do not know may repeat.
REPEATABLE = frozenset({IA_NA, IA_TA, IAADDR, IA_PD, IAPREFIX, VENDOR_OPTS})


def decode_options(data: bytes, scope: Scope, budget: _Budget) -> tuple[Option, ...]:
    """The options of one area (the message's, an IA_NA's, an IAADDR's)."""
    out: list[Option] = []
    seen: set[int] = set()
    i = 0
    while i < len(data):
        if i + 4 > len(data):
            stray = len(data) - i
            raise MalformedMessage(f"{stray} stray bytes after the options of {scope.value}")
        code, length = struct.unpack_from("!HH", data, i)
        value = data[i + 4 : i + 4 + length]
        if len(value) < length:
            raise MalformedMessage(f"option {code} of {length} bytes runs past {scope.value}")
        budget.take()
        known = WHERE.get(code)
        if known is None:
            out.append(Unknown(code, value))
        else:
            name, parse, where = known
            if scope not in where:
                raise MalformedMessage(f"{name} ({code}) inside {scope.value}")
            if code in seen and code not in REPEATABLE:
                raise MalformedMessage(f"{name} ({code}) twice in {scope.value}")
            out.append(parse(value, budget))
        seen.add(code)
        i += 4 + length
    return tuple(out)


def new_budget() -> _Budget:
    return _Budget()
