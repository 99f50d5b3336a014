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

from ..errors import KernelError
from . import rtnl

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE, NFNL_SUBSYS_NFTABLES = 3, 10
NFT_MSG_GETGEN = 16
NFQNL_MSG_CONFIG = 2
_HDR = struct.Struct("=IHHII")

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
    info = rtnl._attr(rtnl.IFLA_INFO_KIND, kind.encode())
    body = (
        rtnl._ifinfo() + rtnl._attr(rtnl.IFLA_LINKINFO, info) + rtnl._attr(rtnl.IFLA_ADDRESS, b"\0")
    )
    probe = rtnl.Message(rtnl.RTM_NEWLINK, rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL, body, kind)
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


def has_nfnl_subsystem(subsys: int, msg: int) -> bool:
    try:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
        )
    except OSError as exc:
        if exc.errno == errno.EPROTONOSUPPORT:
            return False
        raise
    with sock:
        sock.settimeout(5)
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
        kind = (subsys << 8) | msg
        sock.send(_HDR.pack(_HDR.size + len(body), kind, 0x1 | 0x4, 1, 0) + body)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, mtype, _flags, _seq, _pid = _HDR.unpack_from(data, offset)
                if mtype == 2:  # NLMSG_ERROR: the ack, or a refusal
                    (err,) = struct.unpack_from("=i", data, offset + _HDR.size)
                    return -err not in (errno.EINVAL, errno.EOPNOTSUPP)
                offset += max(length + (-length % 4), _HDR.size)


_SUBSYSTEMS = {
    "nftables": (NFNL_SUBSYS_NFTABLES, NFT_MSG_GETGEN),
    "nfqueue": (NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG),
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
