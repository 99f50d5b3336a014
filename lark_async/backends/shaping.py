"""A job's bandwidth, enforced on its veth pair both ways (decide/bandwidth.py decides it).

Each direction is shaped where its packets leave a device, so no ifb is needed: towards
the job on the egress of the node-side end (``e_<name>``, in the node's namespace), from
the job on the egress of the job-side end (``i_<name>``, inside the job's namespace, where
a job without root there cannot change it). On each end:

    root  HTB 1:  (default 1:11; what the exempt filters pick goes to 1:0, HTB's direct
          |        queue, unshaped; IP packets under 256 bytes go to 1:10)
          +-- class 1:1  rate = ceil = the limit: all the job's shaped traffic
                 +-- class 1:10  short packets (ping, DNS, TCP ACKs), served first:
                 |      rate 1/10 of the limit, may borrow up to it; leaf 10: (fq_codel
                 |      where the kernel has it, else a byte FIFO)
                 +-- class 1:11  the rest: rate the other 9/10, may borrow up to the limit
                        +-- TBF 11:  a splitter, not a shaper: its rate is unbounded, its
                               bucket one burst, so a GSO segment larger than the burst
                               is split into frames (sch_tbf.c tbf_segment; HTB passes
                               a veth's 64 KiB segments whole); its byte FIFO is the queue,
                               or fq_codel 12: under it where the kernel has it

Why so, and the latency it buys (the CNI bandwidth plugin's tbf holds a fixed ~25 ms
queue, and a ping waits behind all of it):

* a short packet waits for no bulk queue: 1:10 is below its own rate, so HTB sends it
  at once, at any load; the two classes together never pass the limit (1:1 is charged
  for both);
* burst: 1 ms at the limit, at least two frames; the splitter's is the same, so below
  ~520 Mbit/s (where 1 ms is under 64 KiB) HTB is charged frame by frame and the FIFO
  can be short;
* queue: fq_codel keeps each flow's queue near its 5 ms target at any rate; the FIFO
  fallback holds 10 ms at the limit (at least four bursts: ~10 ms at 10 Mbit/s).

(Tests: ``_LARK_TEST_KERNEL_LACKS=htb`` (or ``tbf``) asks the kernel for a qdisc it cannot
know, ``_LARK_TEST_FAIL_AFTER=shape-ingress`` fails once the node's end is shaped.)

What the kernel offers is found by asking: the first job tries fq_codel and, refused
(ENOENT: no such qdisc), uses the FIFO from then on; the log says which. The qdiscs go
with the veth, so there is nothing to record or undo; a limit the kernel refuses is a
KernelError after the job's qdiscs were taken off again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from dataclasses import dataclass

from .. import testhooks
from ..decide.bandwidth import Bandwidth
from ..decide.settings import AnyNetwork
from ..errors import KernelError, map_errors
from . import netns
from .netlink import rtnl, tc
from .netlink.core import NetlinkError

log = logging.getLogger("lark.shaping")

BURST_S = 0.001
QUEUE_S = 0.010
SHORT_SHARE = 10  # the short packets' class: 1/10 of the limit its own
MAX_QUANTUM_BYTES = 200_000  # HTB warns above it
UNBOUNDED_BYTES_S = 1 << 50  # the splitter's rate: a packet costs it 0 ns, it never waits
ALL, SHORT, BULK = 1, 0x10, 0x11  # class minors under HTB 1: (tc shows 1:10, 1:11); the
# majors of their qdiscs too
DIRECT = 0  # 1:0, HTB's direct queue
CODEL_UNDER_SPLITTER = 0x12
UNKNOWN_QDISC = frozenset({errno.ENOENT, errno.EOPNOTSUPP})
KERNEL_OPTION = {"HTB": "CONFIG_NET_SCH_HTB", "TBF": "CONFIG_NET_SCH_TBF"}

_leaf: str | None = None  # what this kernel gave the first job: fq_codel or bfifo
_leaf_lock = threading.Lock()


@dataclass(frozen=True)
class Shape:
    """One direction's numbers, from its rate (pure)."""

    rate_bytes_s: int
    short_rate_bytes_s: int  # 1:10's own; 1:11 has the rest
    burst_bytes: int  # HTB's classes' and the splitter's: larger GSO segments are split
    quantum_bytes: int
    fifo_limit_bytes: int


def derive_shape(rate_mbit: float, mtu: int = 1500) -> Shape:
    rate = max(2, round(rate_mbit * 1e6 / 8))
    frame = mtu + 14
    burst = max(int(rate * BURST_S), 2 * frame)
    return Shape(
        rate_bytes_s=rate,
        short_rate_bytes_s=max(1, rate // SHORT_SHARE),
        burst_bytes=burst,
        quantum_bytes=min(max(rate // 10, frame), max(MAX_QUANTUM_BYTES, frame)),
        fifo_limit_bytes=max(int(rate * QUEUE_S), 4 * burst),
    )


def _requests(index: int, shape: Shape, name: str) -> list[tc.Request]:
    """The HTB tree and the splitter, without the leaves that depend on the kernel."""
    rate, short = shape.rate_bytes_s, shape.short_rate_bytes_s
    burst, quantum = shape.burst_bytes, shape.quantum_bytes
    root, h = tc.handle(1), tc.handle
    htb = "lark-no-htb" if testhooks.pretend_lacks("htb") else "htb"
    splitter = "lark-no-tbf" if testhooks.pretend_lacks("tbf") else "tbf"
    return [
        tc.htb_root(index, BULK, name, htb),
        tc.htb_class(index, h(1, ALL), root, rate, rate, burst, quantum, 0, name),
        tc.htb_class(index, h(1, SHORT), h(1, ALL), short, rate, burst, quantum, 0, name),
        tc.htb_class(index, h(1, BULK), h(1, ALL), rate - short, rate, burst, quantum, 1, name),
        tc.tbf(
            index, h(BULK), h(1, BULK), UNBOUNDED_BYTES_S, burst, shape.fifo_limit_bytes,
            name, splitter,
        ),
    ]  # fmt: skip


def _leaves(index: int, kind: str, shape: Shape, name: str) -> list[tc.Request]:
    h = tc.handle
    found = [tc.leaf(index, h(SHORT), h(1, SHORT), kind, shape.fifo_limit_bytes, name)]
    if kind == "fq_codel":  # (else the splitter's own FIFO is the bulk queue)
        found.append(tc.leaf(index, h(CODEL_UNDER_SPLITTER), h(BULK, 1), kind, 0, name))
    return found


def shape_link(
    channel: rtnl.Channel,
    name: str,
    rate_mbit: float,
    exempt: tuple[AnyNetwork, ...],
    exempt_by_source: bool,
) -> str:
    """Shape ``name``'s egress to ``rate_mbit`` (exempt networks by source or destination);
    the leaf used. KernelError, with the device's qdiscs taken off again, on refusal."""
    global _leaf
    try:
        link = channel.link(name)
        if link is None:
            raise NetlinkError(errno.ENODEV, f"find {name}")
        index = link.index
        shape = derive_shape(rate_mbit, link.mtu or 1500)
        channel.request(*_requests(index, shape, name))
        with _leaf_lock:
            leaf = _leaf or "fq_codel"
            try:
                channel.request(*_leaves(index, leaf, shape, name))
            except NetlinkError as exc:
                if leaf != "fq_codel" or exc.errno not in UNKNOWN_QDISC:
                    raise
                leaf = "bfifo"
                channel.request(*_leaves(index, leaf, shape, name))
            _leaf = leaf
        filters = [
            tc.u32_match(
                index,
                1 if net.version == 4 else 2,
                net,
                exempt_by_source,
                tc.handle(1, DIRECT),
                name,
            )
            for net in exempt
        ]
        filters += [
            tc.u32_short(index, 3 if v == 4 else 4, v, tc.handle(1, SHORT), name) for v in (4, 6)
        ]
        channel.request(*filters)
        return leaf
    except OSError as exc:
        what = getattr(exc, "what", "") or f"shape {name}"
        reason = exc.strerror or str(exc)
        for qdisc, option in KERNEL_OPTION.items():
            if isinstance(exc, NetlinkError) and exc.errno in UNKNOWN_QDISC and qdisc in what:
                reason = f"this kernel lacks {qdisc} ({option})"
        discard_shaping(channel, name)
        raise KernelError(f"shape {name} to {rate_mbit:g} Mbit/s: {what}: {reason}") from exc


def discard_shaping(channel: rtnl.Channel, name: str) -> None:
    """Take ``name``'s root qdisc off (its default comes back); gone or absent is fine."""
    with contextlib.suppress(OSError):  # (NetlinkError is one)
        channel.request(tc.del_root(channel.index(name), name), absent_ok=True)


def apply(bandwidth: Bandwidth, job: str, external: str, internal: str, job_netns: str) -> None:
    """Shape both ends (blocking; the job's end from a throwaway thread in its namespace).
    ``external`` is in this thread's namespace. Logs the leaf and the limits."""
    leaf = None
    if bandwidth.ingress_mbit is not None:
        with rtnl.Channel() as host:
            leaf = shape_link(host, external, bandwidth.ingress_mbit, bandwidth.exempt, True)
    if bandwidth.egress_mbit is not None:
        egress = bandwidth.egress_mbit

        def inside() -> str:
            with rtnl.Channel() as channel:
                return shape_link(channel, internal, egress, bandwidth.exempt, False)

        try:
            with map_errors(f"shape {internal}"):
                testhooks.fail_after("shape-ingress")
            leaf = netns.inside(job_netns, inside)
        except BaseException:
            if bandwidth.ingress_mbit is not None:
                with rtnl.Channel() as host:
                    discard_shaping(host, external)
            raise
    log.info(
        "%s: bandwidth %s Mbit/s towards the job, %s from it (%s; HTB with a %s leaf, short "
        "packets first%s)",
        job,
        _shown(bandwidth.ingress_mbit),
        _shown(bandwidth.egress_mbit),
        bandwidth.source,
        leaf,
        f"; unshaped: {', '.join(map(str, bandwidth.exempt))}" if bandwidth.exempt else "",
    )


def _shown(rate: float | None) -> str:
    return "unlimited" if rate is None else f"{rate:g}"
