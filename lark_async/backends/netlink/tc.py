"""Traffic control over rtnetlink: the qdisc, class and filter requests of a job's shaping.

Encoded with ``struct`` as rtnl.py does (no pyroute2 on the start-up path). Only what
shaping.py needs: an HTB root (linux/pkt_sched.h ``tc_htb_glob``), HTB classes
(``tc_htb_opt``, with 64-bit rates past 4 GB/s), a TBF used to split GSO segments
(``tc_tbf_qopt``), leaves (fq_codel with its defaults, or a byte FIFO), and u32 filters
matching a source or destination prefix or a short packet (linux/pkt_cls.h
``tc_u32_sel``/``tc_u32_key``).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from .core import NLM_F_CREATE, NLM_F_EXCL, Request, attr

RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTCLASS = 40
RTM_NEWTFILTER = 44
TCA_KIND, TCA_OPTIONS = 1, 2
TC_H_ROOT = 0xFFFFFFFF
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_RATE64, TCA_HTB_CEIL64 = 1, 2, 6, 7
TCA_HTB_DIRECT_QLEN = 9
TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST = 1, 4, 6
HTB_VERSION, HTB_RATE2QUANTUM = 3, 10
TC_LINKLAYER_ETHERNET = 1  # (rates known to be link-layer aware: no rate table needed)
TCA_U32_CLASSID, TCA_U32_SEL = 1, 5
TC_U32_TERMINAL = 1
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
PSCHED_NS_PER_TICK = 64  # the kernel's PSCHED_SHIFT: HTB's buffers are in 64 ns ticks
U32_MAX = 0xFFFFFFFF

_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_HTB_GLOB = struct.Struct("=IIIII")  # version, rate2quantum, defcls, debug, direct_pkts
_RATESPEC = struct.Struct("=BBHhHI")  # cell_log, linklayer, overhead, cell_align, mpu, rate
_U32_SEL = struct.Struct("=BBBxHHhhI")  # flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
_U32_KEY = struct.Struct("=IIii")  # mask, val (both network order), off, offmask
_TBF_TAIL = struct.Struct("=III")  # limit, buffer (ticks), mtu (after rate and peakrate)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def handle(major: int, minor: int = 0) -> int:
    """A qdisc or class handle, ``major:minor``."""
    return (major << 16) | minor


def tcmsg(index: int, handle_: int, parent: int, info: int = 0) -> bytes:
    return _TCMSG.pack(socket.AF_UNSPEC, index, handle_, parent, info)


def htb_root(index: int, default_minor: int, what: str, kind: str = "htb") -> Request:
    """An HTB qdisc ``1:`` at the root; unclassified traffic goes to ``1:default_minor``.
    (``kind``: a test names one the kernel lacks, to see its refusal.)"""
    glob = _HTB_GLOB.pack(HTB_VERSION, HTB_RATE2QUANTUM, default_minor, 0, 0)
    body = tcmsg(index, handle(1), TC_H_ROOT) + attr(TCA_KIND, kind.encode() + b"\0")
    body += attr(TCA_OPTIONS, attr(TCA_HTB_INIT, glob))
    return Request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body, f"add an HTB qdisc to {what}")


def _ratespec(rate_bps: int) -> bytes:
    return _RATESPEC.pack(0, TC_LINKLAYER_ETHERNET, 0, -1, 0, min(rate_bps, U32_MAX))


def ticks(seconds: float) -> int:
    """A time as HTB's buffers hold it (64 ns ticks), at most a u32."""
    return min(int(seconds * 1e9 / PSCHED_NS_PER_TICK), U32_MAX)


def htb_class(
    index: int,
    classid: int,
    parent: int,
    rate_bytes_s: int,
    ceil_bytes_s: int,
    burst_bytes: int,
    quantum: int,
    prio: int,
    what: str,
) -> Request:
    """HTB class ``classid`` under ``parent`` (the root qdisc or a class): ``rate_bytes_s``
    its own, up to ``ceil_bytes_s`` borrowed from its parent, each with a burst of
    ``burst_bytes``; among borrowing classes the lower ``prio`` is served first."""
    buffer = ticks(burst_bytes / rate_bytes_s)
    cbuffer = ticks(burst_bytes / ceil_bytes_s)
    parms = _ratespec(rate_bytes_s) + _ratespec(ceil_bytes_s)
    parms += struct.pack("=IIIII", buffer, cbuffer, quantum, 0, prio)
    options = attr(TCA_HTB_PARMS, parms)
    if max(rate_bytes_s, ceil_bytes_s) > U32_MAX:
        options += attr(TCA_HTB_RATE64, struct.pack("=Q", rate_bytes_s))
        options += attr(TCA_HTB_CEIL64, struct.pack("=Q", ceil_bytes_s))
    body = tcmsg(index, classid, parent) + attr(TCA_KIND, b"htb\0")
    body += attr(TCA_OPTIONS, options)
    return Request(RTM_NEWTCLASS, NLM_F_CREATE | NLM_F_EXCL, body, f"add an HTB class to {what}")


def tbf(
    index: int,
    handle_: int,
    parent: int,
    rate_bytes_s: int,
    burst_bytes: int,
    limit: int,
    what: str,
    kind: str = "tbf",
) -> Request:
    """A TBF qdisc ``handle_`` under class ``parent``: ``rate_bytes_s`` with a bucket of
    ``burst_bytes`` (also the largest packet it passes whole: a larger GSO segment is split
    into frames, sch_tbf.c tbf_segment), and its own byte FIFO of ``limit``."""
    spec = _ratespec(rate_bytes_s)
    parms = spec + bytes(_RATESPEC.size)  # (no peak rate)
    parms += _TBF_TAIL.pack(limit, ticks(burst_bytes / rate_bytes_s), 0)
    options = attr(TCA_TBF_PARMS, parms) + attr(TCA_TBF_BURST, struct.pack("=I", burst_bytes))
    if rate_bytes_s > U32_MAX:
        options += attr(TCA_TBF_RATE64, struct.pack("=Q", rate_bytes_s))
    body = tcmsg(index, handle_, parent) + attr(TCA_KIND, kind.encode() + b"\0")
    body += attr(TCA_OPTIONS, options)
    return Request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body, f"add a TBF qdisc to {what}")


def leaf(index: int, handle_: int, parent: int, kind: str, limit_bytes: int, what: str) -> Request:
    """Qdisc ``handle_`` under class ``parent``: ``fq_codel`` (its defaults: a 5 ms target,
    per-flow queues) or ``bfifo`` of ``limit_bytes``."""
    body = tcmsg(index, handle_, parent) + attr(TCA_KIND, kind.encode() + b"\0")
    if kind == "bfifo":
        body += attr(TCA_OPTIONS, struct.pack("=I", limit_bytes))
    return Request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body, f"add {kind} to {what}")


def u32_match(
    index: int, prio: int, net: Network, source: bool, classid: int, what: str
) -> Request:
    """A u32 filter on root ``1:``: packets whose source (else destination) is in ``net``
    go to ``classid``. Offsets are from the IP header: IPv4 12/16, IPv6 8/24."""
    start = (8 if source else 24) if net.version == 6 else (12 if source else 16)
    keys: list[bytes] = []
    words = len(net.network_address.packed) // 4
    mask_bytes = net.netmask.packed
    addr_bytes = net.network_address.packed
    for i in range(words):
        mask = mask_bytes[4 * i : 4 * i + 4]
        if mask == b"\0\0\0\0" and keys:
            break
        keys.append(_key(mask, addr_bytes[4 * i : 4 * i + 4], start + 4 * i))
        if mask != b"\xff\xff\xff\xff":
            break
    side = "from" if source else "to"
    return _u32(index, prio, net.version, keys, classid, f"exempt traffic {side} {net} on {what}")


def u32_short(index: int, prio: int, version: int, classid: int, what: str) -> Request:
    """A u32 filter on root ``1:``: IP packets under 256 bytes (IPv6: payload under 256)
    go to ``classid``. The length's high byte is zero: IPv4 total length at offset 2,
    IPv6 payload length at offset 4."""
    key = _key(b"\0\0\xff\0", bytes(4), 0) if version == 4 else _key(b"\xff\0\0\0", bytes(4), 4)
    return _u32(index, prio, version, [key], classid, f"serve short packets first on {what}")


def _key(mask: bytes, value: bytes, offset: int) -> bytes:
    """One u32 key; ``mask`` and ``value`` in network order, as the packet holds them."""
    (m,) = struct.unpack("=I", mask)
    (v,) = struct.unpack("=I", value)
    return _U32_KEY.pack(m, v, offset, 0)


def _u32(
    index: int, prio: int, version: int, keys: list[bytes], classid: int, what: str
) -> Request:
    proto = ETH_P_IPV6 if version == 6 else ETH_P_IP
    sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, len(keys), 0, 0, 0, 0, 0) + b"".join(keys)
    options = attr(TCA_U32_CLASSID, struct.pack("=I", classid)) + attr(TCA_U32_SEL, sel)
    info = (prio << 16) | socket.htons(proto)
    body = tcmsg(index, 0, handle(1), info) + attr(TCA_KIND, b"u32\0")
    body += attr(TCA_OPTIONS, options)
    return Request(RTM_NEWTFILTER, NLM_F_CREATE, body, what)


def del_root(index: int, what: str) -> Request:
    """Remove the root qdisc (and everything under it): the device's default comes back."""
    return Request(RTM_DELQDISC, 0, tcmsg(index, 0, TC_H_ROOT), f"remove the qdisc of {what}")
