"""nftables backend: one shared ``inet lark`` table, verdict maps dispatching to per-job chains.

Per-packet cost is one hash lookup per hook whatever the number of jobs, and
adding or removing a job is one atomic transaction that touches only that
job's chain and map elements. Jobs are added, removed and read through our
own nfnetlink messages (netlink/nfnl.py): no library load and no cache of the
whole table per job, so the cost does not grow with the jobs on the node.

What is applied, and so what the golden tests check:

* an inet job's rules, its removal, a bridged job's removal and a stray NAT
  source's removal: nfnetlink batches built once in netlink/nfnl.py (tests
  decode the bytes sent with netlink/nftdecode.py);
* the shared tables (``render_base``, ``render_bridge_base``), a bridged job's
  rules (``render_bridge_add``) and addresses (``render_bridge_addresses``):
  nft text, run through libnftables as it is.

libnftables reports failures only as text, so no decision here reads its
words: whether a table or set is there is asked through nfnetlink, where
absence is the kernel's ENOENT.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ...decide.accounting import INCOMING, INCOMING_IPV6, OUTGOING, OUTGOING_IPV6
from ...decide.modes import RuleFamily
from ...decide.reach import CLOSED, NodeReach
from ...errors import KernelError, map_errors
from ..netlink import NetlinkError, nfnl

TABLE = "lark"
FAMILY = RuleFamily.INET
JOB_MAP = "jobs"
NAT_SET = "nat_sources"
NAT_SET6 = "nat_sources6"


def _q(text: str) -> str:
    """Quote a name for the nft parser; names are validated before they get here."""
    return '"' + text.replace('"', "") + '"'


def render_base() -> str:
    """The shared table; re-declared (idempotently) in every add transaction so that the first
    job on a node, or a ruleset flushed by someone, is healed atomically."""
    t = f"{FAMILY} {TABLE}"
    return "\n".join(
        [
            f"add table {t}",
            f"add map {t} {JOB_MAP} {{ type ifname : verdict ; }}",
            f"add set {t} {NAT_SET} {{ type ipv4_addr ; }}",
            f"add set {t} {NAT_SET6} {{ type ipv6_addr ; }}",
            *(
                f"add chain {t} {hook} {{ type filter hook {hook} priority filter ; "
                "policy accept ; }"
                for hook in ("forward", "input", "output")
            ),
            f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat ; "
            "policy accept ; }",
            f"flush chain {t} forward",
            f"add rule {t} forward iifname vmap @{JOB_MAP}",
            f"add rule {t} forward oifname vmap @{JOB_MAP}",
            f"flush chain {t} input",
            f"add rule {t} input iifname vmap @{JOB_MAP}",
            f"flush chain {t} output",
            f"add rule {t} output oifname vmap @{JOB_MAP}",
            f"flush chain {t} postrouting",
            f'add rule {t} postrouting ip saddr @{NAT_SET} oifname != "e_*" masquerade',
            f'add rule {t} postrouting ip6 saddr @{NAT_SET6} oifname != "e_*" masquerade',
        ]
    )


@dataclass(frozen=True)
class JobRules:
    """What the firewall knows of one job; also what the state record keeps for undo, and
    for a restore (``reach``: what of the node the job may reach; closed by default).
    ``internal_address6``: the job's IPv6 (NAT66 when ``nat6``, else routed)."""

    chain: str
    external_interface: str
    internal_address: ipaddress.IPv4Address | None
    nat: bool
    reach: NodeReach = CLOSED
    internal_address6: ipaddress.IPv6Address | None = None
    nat6: bool = False

    def to_record(self) -> dict[str, object]:
        found: dict[str, object] = {
            "chain": self.chain,
            "external_interface": self.external_interface,
            "internal_address": str(self.internal_address) if self.internal_address else None,
            "nat": self.nat,
            "reach": self.reach.to_record(),
        }
        if self.internal_address6 is not None:
            found |= {"internal_address6": str(self.internal_address6), "nat6": self.nat6}
        return found

    @classmethod
    def from_record(cls, data: dict[str, object]) -> JobRules:
        addr, addr6 = data.get("internal_address"), data.get("internal_address6")
        reach = data.get("reach")
        return cls(
            chain=str(data["chain"]),
            external_interface=str(data["external_interface"]),
            internal_address=ipaddress.IPv4Address(str(addr)) if addr else None,
            nat=bool(data.get("nat")),
            reach=CLOSED if reach is None else NodeReach.from_record(reach),
            internal_address6=ipaddress.IPv6Address(str(addr6)) if addr6 else None,
            nat6=bool(data.get("nat6")),
        )

    @property
    def family6(self) -> nfnl.Family6 | None:
        if self.internal_address6 is None:
            return None
        nat_set = NAT_SET6 if self.nat6 else None
        return nfnl.Family6(self.internal_address6, nat_set, (OUTGOING_IPV6, INCOMING_IPV6))


class _Nft:
    """libnftables through ctypes; one context, used by one thread at a time."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise KernelError(f"cannot load libnftables ({name}): install nftables") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self.lib.nft_ctx_free(self.ctx)

    def run(self, commands: str, doing: str) -> str:
        lib, ctx = self.lib, self.ctx
        with self.lock:
            rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise NftError(doing, err)
        return out


def run_here(commands: str, doing: str) -> str:
    """``commands`` in the calling thread's network namespace, through a context of its
    own (a context talks to the namespace of the thread that made it), freed after."""
    ctx = _Nft()
    try:
        return ctx.run(commands, doing)
    finally:
        ctx.close()


class NftError(KernelError):
    def __init__(self, doing: str, stderr: str) -> None:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("Error:")]
        reason = lines[0].removeprefix("Error:").strip() if lines else stderr.strip()[:200]
        super().__init__(f"{doing}: {reason or 'nft failed'}")


_nft: _Nft | None = None
LIBNFTABLES = "libnftables.so.1"
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
             "/lib/x86_64-linux-gnu", "/usr/local/lib")  # fmt: skip


def check_available(dirs: tuple[str, ...] = _LIB_DIRS) -> None:
    """Before anything is created: libnftables is there for the first job's table (a stat of
    a few paths, not a load; an unusual layout falls back to the loader's own search)."""
    import os

    if any(os.path.exists(f"{d}/{LIBNFTABLES}") for d in dirs):
        return
    if ctypes.util.find_library("nftables") is None:
        raise KernelError(
            f"the nftables firewall backend needs {LIBNFTABLES}, which is not installed "
            "(Debian: apt install nftables)"
        )


def nft() -> _Nft:
    global _nft
    if _nft is None:
        _nft = _Nft()
    return _nft


def _job_messages(job: JobRules, add: bool) -> list[nfnl.Message]:
    nat_set = NAT_SET if job.nat else None
    if add:
        return nfnl.job_add(
            TABLE,
            job.chain,
            job.external_interface,
            job.internal_address,
            JOB_MAP,
            nat_set,
            (OUTGOING, INCOMING),
            job.reach,
            job.family6,
        )
    return nfnl.job_remove(
        TABLE,
        job.chain,
        job.external_interface,
        job.internal_address,
        JOB_MAP,
        nat_set,
        job.family6,
    )


_channel: nfnl.Channel | None = None
_channel_lock = threading.Lock()


@contextlib.contextmanager
def _nfnl() -> Iterator[nfnl.Channel]:
    """The process's one nfnetlink socket, kept open: closing one right after a deletion
    makes the kernel wait out an RCU grace period (~15 ms) before the close returns."""
    global _channel
    with _channel_lock:
        if _channel is None:
            _channel = nfnl.Channel()
        yield _channel


def apply_job(job: JobRules) -> None:
    """One nfnetlink transaction; the shared table is created (libnftables) on first use."""
    doing = f"add firewall chain {job.chain}"
    messages = _job_messages(job, add=True)
    with map_errors(doing), _nfnl() as channel:
        try:
            channel.batch(messages)
        except NetlinkError as exc:
            if exc.errno != errno.ENOENT:
                raise
            nft().run(render_base(), f"create nftables table {FAMILY} {TABLE}")
            channel.batch(messages)


def discard_job(job: JobRules) -> None:
    """Idempotent: one transaction, or, when part is already gone, each piece on its own."""
    _discard(_job_messages(job, add=False), f"remove firewall chain {job.chain}")


def _discard(messages: list[nfnl.Message], doing: str) -> None:
    """A removal batch; ENOENT (the table, chain, set or element is gone) means done."""
    with map_errors(doing), _nfnl() as channel:
        try:
            channel.batch(messages)
        except NetlinkError as exc:
            if exc.errno != errno.ENOENT:
                raise
            for message in messages:
                try:
                    channel.batch([message])
                except NetlinkError as piece:
                    if piece.errno != errno.ENOENT:
                        raise


def list_tables() -> list[tuple[str, str]]:
    """(family, name) of every nftables table on the node, as ``nft list tables`` names them."""
    with map_errors("list nftables tables"), _nfnl() as channel:
        found = channel.tables()
    return [(nfnl.FAMILY_NAMES.get(family, str(family)), name) for family, name in found]


def has_nat_source(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``nat_sources`` (``nat_sources6``) still holds the job's address (one
    netlink lookup)."""
    with map_errors(f"look up NAT source {addr}"), _nfnl() as channel:
        return channel.has_address(TABLE, _nat_set(addr), addr)


def _nat_set(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return NAT_SET6 if addr.version == 6 else NAT_SET


def read_counters(chain: str, family: str = FAMILY) -> dict[str, tuple[int, int]]:
    """Bytes and packets of every commented counter in the job's chain (admin rules included)."""
    counters: dict[str, tuple[int, int]] = {}
    nfproto = nfnl.NFPROTO_BRIDGE if family == BRIDGE_FAMILY else nfnl.NFPROTO_INET
    with map_errors(f"read counters of {chain}"), _nfnl() as channel:
        for rule in channel.dump_rules(TABLE, chain, nfproto):
            found = nfnl.rule_counter(rule)
            if found is not None:
                comment, nbytes, packets = found
                counters[comment] = (nbytes, packets)
    return counters


# -- bridge mode: the ``bridge lark`` table ---------------------------------------------------
#
# A bridged job's frames never reach the inet hooks (no br_netfilter needed), so bridge mode
# has its own table in the bridge family: a verdict map from port name to the job's chain.
# Frames from a job are checked at prerouting, which the bridge runs before it learns the
# frame's source MAC (br_handle_frame -> NF_BR_PRE_ROUTING -> br_handle_frame_finish, which
# learns): only what the job may send gets further, then it is counted. Frames to a job are
# counted at forward and output. The job's addresses are a set whose elements expire with
# the lease, so a new lease changes an element, not the rules.

BRIDGE_FAMILY = RuleFamily.BRIDGE
PORT_MAP = "ports"  # (was "jobs", dispatched at forward: a table of that shape is re-based)
# 802.1D reserved group addresses (STP, LACP, 802.1X, LLDP, ...): a bridge hands them to the
# host without prerouting (br_handle_frame), so frames from job ports to them stop at input
BRIDGE_GROUP = "ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00"
DHCP_PORTS = "{ 67, 68 }"
DHCP6_PORTS = "{ 546, 547 }"


def _addr_set(chain: str) -> str:
    return f"{chain}_ip"


def render_bridge_base() -> str:
    """Idempotent (base chains flushed and refilled in the same transaction), so two agents
    creating it at once do not dispatch twice. A job's frames are dispatched where they
    enter (prerouting, once per frame), frames to a job where they leave by its port:
    forward and output run once per egress port of a flooded frame, so dispatching there
    on the ingress port would charge the sender of a broadcast once per port."""
    t = f"{BRIDGE_FAMILY} {TABLE}"
    lines = [f"add table {t}", f"add map {t} {PORT_MAP} {{ type ifname : verdict ; }}"]
    hooks = {
        "prerouting": f"iifname vmap @{PORT_MAP}",
        "forward": f"oifname vmap @{PORT_MAP}",
        "input": f'iifname "e_*" {BRIDGE_GROUP} drop',
        "output": f"oifname vmap @{PORT_MAP}",
    }
    for hook, rule in hooks.items():
        lines += [
            f"add chain {t} {hook} {{ type filter hook {hook} priority filter ; policy accept ; }}",
            f"flush chain {t} {hook}",
            f"add rule {t} {hook} {rule}",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class BridgeRules:
    """A bridged job's firewall; also what the state record keeps for undo."""

    chain: str
    external_interface: str
    mac: str  # the job's own MAC, aa:bb:cc:dd:ee:ff
    ipv6: bool = False  # the job has IPv6 on the LAN (SLAAC): guarded, not dropped

    def to_record(self) -> dict[str, object]:
        found: dict[str, object] = {
            "family": BRIDGE_FAMILY,
            "chain": self.chain,
            "external_interface": self.external_interface,
            "mac": self.mac,
        }
        return found | {"ipv6": True} if self.ipv6 else found

    @classmethod
    def from_record(cls, data: dict[str, object]) -> BridgeRules:
        return cls(
            str(data["chain"]),
            str(data["external_interface"]),
            str(data["mac"]),
            bool(data.get("ipv6")),
        )


def _addr_set6(chain: str) -> str:
    return f"{chain}_ip6"


# ICMPv6 a job never sends on a LAN (RFC 6105's RA guard): router advertisements,
# redirects, router renumbering
ROUTER_ICMPV6 = "{ nd-router-advert, nd-redirect, 138 }"
# what a host sends from :: before it has an address: DAD's solicitation, a router
# solicitation, MLD reports
UNSPECIFIED_ICMPV6 = (
    "{ nd-neighbor-solicit, nd-router-solicit, mld-listener-report, mld2-listener-report }"
)


def _ipv6_guard(addrs: str) -> list[str]:
    """A bridged job's IPv6, in its guard: no router messages (RA guard), no DHCPv6 at
    all (RFC 7610's shield drops server and relay messages, UDP from 547 or to 546; the
    job's own requests go too, as for DHCPv4: the agent's client speaks for the job from
    the bridge's side), from :: only DAD, router solicitations and MLD, else only from its
    own addresses (``addrs``: link-local, SLAAC, leased; the agent keeps it as the kernel
    forms and drops them), and a neighbour advertisement only for one of them. The set holds
    128-bit keys (``typeof @nh,64,128``) so that the advertisement's target, which nft
    1.0 has no name for, is looked up in it too."""
    v6 = "ether type ip6"
    return [
        f"{v6} icmpv6 type {ROUTER_ICMPV6} drop",
        f"{v6} udp sport {DHCP6_PORTS} drop",
        f"{v6} udp dport {DHCP6_PORTS} drop",
        f"{v6} ip6 saddr :: icmpv6 type {UNSPECIFIED_ICMPV6} return",
        f"{v6} @nh,64,128 != @{addrs} drop",
        f"{v6} icmpv6 type nd-neighbor-advert @th,64,128 != @{addrs} drop",
        f"{v6} meta l4proto 0-255 return",
    ]


def render_bridge_add(job: BridgeRules) -> str:
    """The job's chain. Frames from the job (prerouting: ``iifname`` is its port) first go
    through a guard (an anonymous chain bound to the rule, gone with it) that lets them on
    only with the job's MAC as source and, for ARP, as sender, its bound address as sender IP
    (so no RFC 5227 probe from 0.0.0.0: the agent probes for the job, from the bridge's
    side), IPv4 from its bound address with a valid header and no DHCP (UDP 67 or 68 either
    way: the agent's client speaks for the job from the bridge's side, so a job sends
    neither DHCP requests nor forged replies). A job with IPv6 (SLAAC) has its IPv6
    guarded there too (``_ipv6_guard``); without, IPv6 is dropped there, as are VLAN tags
    and other ethertypes. Then IP is counted both ways (and IPv6 apart), and the chain
    ends open: an admin's create script appends its own
    counting and dropping rules, which every frame of the job still reaches. The established
    path is a few compares, one set lookup and the counter."""
    t = f"{BRIDGE_FAMILY} {TABLE}"
    c, port, ips, mac = job.chain, _q(job.external_interface), _addr_set(job.chain), job.mac
    guard = [
        f"ether saddr != {mac} drop",
        f"arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether {mac} "
        f"arp saddr ip @{ips} return",
        *(_ipv6_guard(_addr_set6(c)) if job.ipv6 else []),
        "ether type != ip drop",
        f"ip saddr != @{ips} drop",
        f"udp sport {DHCP_PORTS} drop",
        f"udp dport {DHCP_PORTS} drop",
        "meta l4proto 0-255 return",  # (a header nft cannot parse has no l4proto: dropped)
        "drop",
    ]
    families = "ether type { ip, ip6 }" if job.ipv6 else "ether type ip"
    rules = [
        f"iifname {port} jump {{ {' ; '.join(guard)} ; }}",
        f"iifname {port} {families} counter comment {_q(OUTGOING)}",
        f"oifname {port} {families} counter comment {_q(INCOMING)}",
    ]
    sets = [f"add set {t} {ips} {{ type ipv4_addr ; flags timeout ; }}"]
    if job.ipv6:
        rules += [
            f"iifname {port} ether type ip6 counter comment {_q(OUTGOING_IPV6)}",
            f"oifname {port} ether type ip6 counter comment {_q(INCOMING_IPV6)}",
        ]
        sets.append(f"add set {t} {_addr_set6(c)} {{ typeof @nh,64,128 ; flags timeout ; }}")
    return "\n".join(
        [
            f"add chain {t} {c}",
            *sets,
            *(f"add rule {t} {c} {rule}" for rule in rules),
            f"add element {t} {PORT_MAP} {{ {port} : jump {c} }}",
        ]
    )


def apply_bridge_job(job: BridgeRules) -> None:
    """The job's chain; when that fails (most often: no shared table yet), it is tried once
    more together with the idempotent base. Not "is the table there?" first: an agent
    starting at the same moment may create it between the failure and the look, and the
    failure would be reported for a table that is now in place (seen in CI). A failure of
    the second try is the real one."""
    doing = f"add bridge firewall chain {job.chain}"
    try:
        nft().run(render_bridge_add(job), doing)
    except NftError:
        nft().run(render_bridge_base() + "\n" + render_bridge_add(job), doing)


def discard_bridge_job(job: BridgeRules) -> None:
    """Idempotent: one nfnetlink transaction, or, when part is already gone, each piece."""
    sets = [_addr_set(job.chain)] + ([_addr_set6(job.chain)] if job.ipv6 else [])
    messages = nfnl.bridge_job_remove(TABLE, job.chain, job.external_interface, PORT_MAP, sets)
    _discard(messages, f"remove bridge firewall chain {job.chain}")


Binding = tuple[
    ipaddress.IPv4Address, float | None
]  # an address, and seconds it stays (None: for good)


def render_bridge_addresses(job: BridgeRules, bindings: list[Binding]) -> str:
    """The job's addresses, replaced in one transaction; a lease's element expires with the
    lease, so an address is not the job's past its lease even if the agent is gone."""
    t, ips = f"{BRIDGE_FAMILY} {TABLE}", _addr_set(job.chain)
    elements = [
        str(addr) if stay is None else f"{addr} timeout {max(int(stay * 1000), 1)}ms"
        for addr, stay in bindings
        if stay is None or stay > 0
    ]
    lines = [f"flush set {t} {ips}"]
    if elements:
        lines.append(f"add element {t} {ips} {{ {', '.join(elements)} }}")
    return "\n".join(lines)


Binding6 = tuple[ipaddress.IPv6Address, float | None]


def render_bridge_addresses6(job: BridgeRules, bindings: list[Binding6]) -> str:
    """The job's IPv6 addresses as the kernel has them now, in one transaction; each
    element expires with the address's valid lifetime."""
    t, ips = f"{BRIDGE_FAMILY} {TABLE}", _addr_set6(job.chain)
    elements = [
        f"0x{addr.packed.hex()}" + ("" if stay is None else f" timeout {max(int(stay), 1)}s")
        for addr, stay in bindings
        if stay is None or stay > 0
    ]
    lines = [f"flush set {t} {ips}"]
    if elements:
        lines.append(f"add element {t} {ips} {{ {', '.join(elements)} }}")
    return "\n".join(lines)


def set_bridge_addresses6(job: BridgeRules, bindings: list[Binding6]) -> None:
    nft().run(render_bridge_addresses6(job, bindings), f"set the IPv6 addresses of {job.chain}")


def set_bridge_addresses(job: BridgeRules, bindings: list[Binding]) -> None:
    """The source addresses the job may use (its lease or static address; none while it has
    no lease)."""
    nft().run(render_bridge_addresses(job, bindings), f"set the addresses of {job.chain}")


def dump_table(family: str) -> str:
    """``nft list table`` of Lark's table in ``family`` with counters; empty when absent."""
    command = f"list table {family} {TABLE}"
    try:
        return nft().run(command, command)
    except NftError:
        nfproto = nfnl.NFPROTO_BRIDGE if family == BRIDGE_FAMILY else nfnl.NFPROTO_INET
        with map_errors(command), _nfnl() as channel:
            if not channel.has_table(nfproto, TABLE):
                return ""
        raise


def discard_nat_source(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """An address left in ``nat_sources`` (``nat_sources6``) by a job whose chain is gone
    (idempotent)."""
    _discard([nfnl.address_remove(TABLE, _nat_set(addr), addr)], f"remove NAT source {addr}")
