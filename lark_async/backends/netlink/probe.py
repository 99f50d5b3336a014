"""What the kernel must offer, asked before anything is created.

Modules load on demand and may be built in, so neither ``/sys/module`` nor
``/lib/modules`` tells. Instead each feature is asked a question only it can
answer, one that creates nothing:

* link kinds (veth, bridge): an RTM_NEWLINK of that kind with a malformed
  hardware address. A kernel that knows the kind rejects the address
  (EINVAL); one that does not answers EOPNOTSUPP (after trying to load the
  module, as a real request would).
* nfnetlink subsystems (nf_tables, nfnetlink_queue): a well-formed request
  to the subsystem (nf_tables: its generation; the queue: a config message
  naming no queue, ENODEV); nfnetlink answers EINVAL for a subsystem it
  does not have.

A few netlink round trips (~0.1 ms), so every job asks.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ... import testhooks
from ...errors import KernelError
from . import nfnl, rtnl, tc
from .core import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NetlinkError, Request, Socket, attr

NFQNL_MSG_CONFIG = 2

# test-only: pretend these features are missing, by asking the kernel about a name it
# cannot know (so the real refusal path runs); unset in production
_PRETEND_MISSING = frozenset(filter(None, os.environ.get("_LARK_TEST_KERNEL_LACKS", "").split(",")))


NO_SUCH_SUBSYS = 0xFF


def _ask(feature: str) -> bool:
    pretend = feature in _PRETEND_MISSING
    if feature in ("veth", "bridge"):
        return knows_link_kind(f"lark-no-{feature}" if pretend else feature)
    subsys, msg = _SUBSYSTEMS[feature]
    return has_nfnl_subsystem(NO_SUCH_SUBSYS if pretend else subsys, msg)


def knows_link_kind(kind: str) -> bool:
    info = attr(rtnl.IFLA_INFO_KIND, kind.encode())
    body = rtnl.ifinfo() + attr(rtnl.IFLA_LINKINFO, info) + attr(rtnl.IFLA_ADDRESS, b"\0")
    probe = Request(rtnl.RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, kind)
    try:
        with rtnl.Channel() as channel:
            channel.request(probe)
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            return False
        if exc.errno == errno.EINVAL:
            return True
        raise
    raise KernelError(f"kernel probe for link kind {kind} created a link")  # cannot happen


def knows_qdisc(kind: str) -> bool:
    """Whether the kernel has the qdisc ``kind``: asked as a root qdisc of loopback with no
    options, which a qdisc that needs options (HTB: its TCA_HTB_INIT) refuses with EINVAL
    once found; an unknown kind is ENOENT. Only for such qdiscs (not fq_codel, which takes
    none and would be made); should one be made all the same, it is taken off at once."""
    if testhooks.pretend_lacks(kind):
        kind = f"lark-no-{kind}"
    body = tc.tcmsg(1, tc.handle(0xFFF0), tc.TC_H_ROOT) + attr(tc.TCA_KIND, kind.encode() + b"\0")
    ask = Request(tc.RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body, f"qdisc {kind}")
    with rtnl.Channel() as channel:
        [err] = channel.netlink.acks([ask])
        if err == 0:
            channel.request(tc.del_root(1, "lo"), absent_ok=True)
            return True
    if err in (errno.ENOENT, errno.EOPNOTSUPP):
        return False
    if err == errno.EINVAL:
        return True
    raise NetlinkError(err, f"ask the kernel for qdisc {kind}")


def has_nfnl_subsystem(subsys: int, msg: int) -> bool:
    """nfnetlink answers EINVAL (or EOPNOTSUPP) for a subsystem it does not have; any other
    answer, refusals included, comes from the subsystem itself."""
    try:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, nfnl.NETLINK_NETFILTER
        )
    except OSError as exc:
        if exc.errno == errno.EPROTONOSUPPORT:
            return False
        raise
    with sock:
        sock.settimeout(5)
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
        try:
            Socket(sock).call(Request((subsys << 8) | msg, NLM_F_ACK, body, "probe"))
        except NetlinkError as exc:
            return exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP)
        return True


_SUBSYSTEMS = {
    "nftables": (nfnl.NFNL_SUBSYS_NFTABLES, nfnl.NFT_MSG_GETGEN),
    "nfqueue": (nfnl.NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG),
}
FEATURES = {
    "netns": "network namespaces (CONFIG_NET_NS)",
    "veth": "veth links (CONFIG_VETH)",
    "bridge": "bridge links (CONFIG_BRIDGE)",
    "nftables": "nf_tables (CONFIG_NF_TABLES)",
    "nfqueue": "nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE)",
}


def require(*features: str) -> None:
    """Raise one clear KernelError for the first missing feature (keys of FEATURES)."""
    for feature in features:
        if feature == "netns":
            ok = os.path.exists("/proc/self/ns/net") and "netns" not in _PRETEND_MISSING
        else:
            try:
                ok = _ask(feature)
            except OSError as exc:
                raise KernelError(f"asking the kernel for {FEATURES[feature]}: {exc}") from exc
        if not ok:
            raise KernelError(f"this kernel lacks {FEATURES[feature]}; nothing was created")
