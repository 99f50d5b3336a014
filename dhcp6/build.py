"""One builder per message a client sends, with the options RFC 8415 section 18.2 and
appendix B give each. Every message carries our CLIENTID and an ELAPSED_TIME (section 18.2:
MUST); ``with_elapsed`` updates the latter for a retransmission (section 21.9)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from . import options as opt
from .config import Config
from .message import Message

MT = opt.MessageType
INF_MAX_RT = 83  # RFC 8415 section 21.25


def _oro(config: Config, must: int) -> opt.OptionRequest:
    # section 21.24/21.25: SOL_MAX_RT (INF_MAX_RT) MUST be in the ORO of SOLICIT, REQUEST,
    # RENEW, REBIND (INFORMATION-REQUEST)
    return opt.OptionRequest(tuple(dict.fromkeys((*config.requested, must))))


def _ia(iaid: int, addresses: Iterable[ipaddress.IPv6Address]) -> opt.IaNa:
    """Section 18.2: the client sets T1, T2 and the lifetimes to 0; the server ignores them."""
    return opt.IaNa(iaid, 0, 0, tuple(opt.IaAddress(a) for a in addresses))


def _message(kind: MT, xid: int, options: list[opt.Option]) -> Message:
    return Message(kind, xid, (*options, opt.ElapsedTime(0)))


def solicit(config: Config, xid: int) -> Message:
    """Section 18.2.1: an IA_NA without addresses, the ORO, RAPID_COMMIT if configured."""
    o: list[opt.Option] = [
        opt.ClientId(config.duid),
        _ia(config.iaid, ()),
        _oro(config, opt.SOL_MAX_RT),
    ]
    if config.rapid_commit:
        o.append(opt.RapidCommit())
    return _message(MT.SOLICIT, xid, o)


def request(
    config: Config, xid: int, server: bytes, addresses: Iterable[ipaddress.IPv6Address]
) -> Message:
    """Section 18.2.2: the chosen server's identifier; the advertised addresses as hints."""
    o: list[opt.Option] = [
        opt.ClientId(config.duid),
        opt.ServerId(server),
        _ia(config.iaid, addresses),
        _oro(config, opt.SOL_MAX_RT),
    ]
    return _message(MT.REQUEST, xid, o)


def renew(
    config: Config, xid: int, server: bytes, addresses: Iterable[ipaddress.IPv6Address]
) -> Message:
    """Section 18.2.4: the server that holds the binding, every address of the IA."""
    o: list[opt.Option] = [
        opt.ClientId(config.duid),
        opt.ServerId(server),
        _ia(config.iaid, addresses),
        _oro(config, opt.SOL_MAX_RT),
    ]
    return _message(MT.RENEW, xid, o)


def rebind(config: Config, xid: int, addresses: Iterable[ipaddress.IPv6Address]) -> Message:
    """Section 18.2.5: like RENEW, to any server: no server identifier (MUST NOT)."""
    o: list[opt.Option] = [
        opt.ClientId(config.duid),
        _ia(config.iaid, addresses),
        _oro(config, opt.SOL_MAX_RT),
    ]
    return _message(MT.REBIND, xid, o)


def release(
    duid: bytes, iaid: int, xid: int, server: bytes, addresses: Iterable[ipaddress.IPv6Address]
) -> Message:
    """Section 18.2.7: the server and the addresses given back; no ORO. Plain arguments, so
    a sweeper that finds a dead job's lease can build it too."""
    o: list[opt.Option] = [opt.ClientId(duid), opt.ServerId(server), _ia(iaid, addresses)]
    return _message(MT.RELEASE, xid, o)


def decline(
    duid: bytes, iaid: int, xid: int, server: bytes, addresses: Iterable[ipaddress.IPv6Address]
) -> Message:
    """Section 18.2.8: the server and the addresses found in use; no ORO."""
    o: list[opt.Option] = [opt.ClientId(duid), opt.ServerId(server), _ia(iaid, addresses)]
    return _message(MT.DECLINE, xid, o)


def information_request(config: Config, xid: int) -> Message:
    """Section 18.2.6: configuration without addresses (no IA); the client machine does not
    send it, a stateless caller may."""
    o: list[opt.Option] = [opt.ClientId(config.duid), _oro(config, INF_MAX_RT)]
    return _message(MT.INFORMATION_REQUEST, xid, o)


def with_elapsed(msg: Message, seconds: float) -> Message:
    """The same message with ELAPSED_TIME set to ``seconds`` (0xffff hundredths at most)."""
    centis = opt.ElapsedTime(min(max(int(seconds * 100), 0), 0xFFFF))
    return Message(
        msg.msg_type,
        msg.xid,
        tuple(centis if isinstance(o, opt.ElapsedTime) else o for o in msg.options),
    )
