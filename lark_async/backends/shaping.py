"""A job's bandwidth, enforced on its veth pair both ways (decide/bandwidth.py decides it).

Each direction is shaped where its packets leave a device, so no ifb is needed: towards
the job on the egress of the node-side end (``e_<name>``, in the node's namespace), from
the job on the egress of the job-side end (``i_<name>``, inside the job's namespace, where
a job without root there cannot change it). On each end:

    root  HTB 1:  (default class 1:1; what the exempt filters pick goes to 1:0, HTB's
          |        direct queue, unshaped)
          +-- class 1:1  rate = ceil = the limit
                 +-- leaf 2:  fq_codel where the kernel has it, else a byte FIFO

Sizing, so that a shaped job adds little latency under load (the CNI bandwidth plugin's
tbf holds a fixed ~25 ms queue):

* burst: the larger of 1 ms at the limit and one 64 KiB GSO segment (a veth passes
  TCP's segments whole), so HTB never has to split its time below a segment;
* leaf: fq_codel keeps each flow's queue near its 5 ms target at any rate; the FIFO
  fallback holds 10 ms at the limit, but never less than two 64 KiB segments (else a
  whole segment would always be dropped): so at most 10 ms from 105 Mbit/s up, and
  ~105 ms at 10 Mbit/s, where fq_codel is the real answer.

(Tests: ``_LARK_TEST_KERNEL_LACKS=htb`` asks the kernel for a qdisc it cannot know,
``_LARK_TEST_FAIL_AFTER=shape-ingress`` fails once the node's end is shaped.)

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
GSO_SEGMENT_BYTES = 65536 + 14  # the largest skb a veth passes, with its Ethernet header
MAX_QUANTUM_BYTES = 200_000  # HTB warns above it
SHAPED, DIRECT = 1, 0  # class minors: 1:1 shaped, 1:0 HTB's direct queue
UNKNOWN_QDISC = frozenset({errno.ENOENT, errno.EOPNOTSUPP})

_leaf: str | None = None  # what this kernel gave the first job: fq_codel or bfifo
_leaf_lock = threading.Lock()


@dataclass(frozen=True)
class Shape:
    """One direction's numbers, from its rate (pure)."""

    rate_bytes_s: int
    burst_bytes: int
    quantum_bytes: int
    fifo_limit_bytes: int


def derive_shape(rate_mbit: float, mtu: int = 1500) -> Shape:
    rate = max(1, round(rate_mbit * 1e6 / 8))
    frame = mtu + 14
    return Shape(
        rate_bytes_s=rate,
        burst_bytes=max(int(rate * BURST_S), GSO_SEGMENT_BYTES),
        quantum_bytes=min(max(rate // 10, frame), max(MAX_QUANTUM_BYTES, frame)),
        fifo_limit_bytes=max(int(rate * QUEUE_S), 2 * GSO_SEGMENT_BYTES),
    )


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
        htb = "lark-no-htb" if testhooks.pretend_lacks("htb") else "htb"
        channel.request(
            tc.htb_root(index, SHAPED, name, htb),
            tc.htb_class(
                index, SHAPED, shape.rate_bytes_s, shape.burst_bytes, shape.quantum_bytes, name
            ),
        )
        with _leaf_lock:
            leaf = _leaf or "fq_codel"
            try:
                channel.request(tc.leaf(index, SHAPED, leaf, shape.fifo_limit_bytes, name))
            except NetlinkError as exc:
                if leaf != "fq_codel" or exc.errno not in UNKNOWN_QDISC:
                    raise
                leaf = "bfifo"
                channel.request(tc.leaf(index, SHAPED, leaf, shape.fifo_limit_bytes, name))
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
        if filters:
            channel.request(*filters)
        return leaf
    except OSError as exc:
        what = getattr(exc, "what", "") or f"shape {name}"
        reason = exc.strerror or str(exc)
        if isinstance(exc, NetlinkError) and exc.errno in UNKNOWN_QDISC and "HTB" in what:
            reason = "this kernel lacks HTB (CONFIG_NET_SCH_HTB)"
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
        "%s: bandwidth %s Mbit/s towards the job, %s from it (%s; HTB with a %s leaf%s)",
        job,
        _shown(bandwidth.ingress_mbit),
        _shown(bandwidth.egress_mbit),
        bandwidth.source,
        leaf,
        f"; unshaped: {', '.join(map(str, bandwidth.exempt))}" if bandwidth.exempt else "",
    )


def _shown(rate: float | None) -> str:
    return "unlimited" if rate is None else f"{rate:g}"
