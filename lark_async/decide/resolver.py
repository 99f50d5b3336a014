"""The job's ``/etc/resolv.conf`` and ``/etc/hosts``: what they say, and what it takes for
them to work from the job's namespace. Pure: texts and addresses in, a ``JobView`` out.

Where the job's DNS comes from, first that applies:

1. the admin's file, as it is: ``LARK_JOB_RESOLV_CONF``, else the iproute2 convention
   ``/etc/netns/<netns>/resolv.conf`` (what ``ip netns exec`` bind-mounts);
2. bridge mode with DHCP: the lease's servers (option 6) and domain (option 15), kept
   current as the lease changes; with a static address: ``LARK_JOB_DNS``;
3. the node's own ``/etc/resolv.conf``.

Whatever the file says, a loopback server in it (systemd-resolved's 127.0.0.53, a local
unbound or dnsmasq on 127.0.0.1) is the node's: the agent relays it into the job's
namespace on the same address (job/relay.py), over UDP and TCP, so the node's own cache
answers, whatever it is. (systemd-nspawn's alternative, resolved's upstream list, only
works where resolved runs and bypasses the node's cache; the relay works for any.) A NAT
job reaches a server on another of the node's addresses through its firewall, which opens
port 53 to exactly those (decide/reach.py). A job in mode ``none`` has no network: it gets
no DNS relay, since a relayed resolver would be a way out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .reach import Proto, Service

MAX_FILE_BYTES = 64 * 1024  # a resolv.conf or hosts file we read or write
MAX_NAMESERVERS = 3  # glibc's MAXNS: later lines are ignored by the resolver
DNS_PORT = 53
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")  # fmt: skip

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ResolvConf:
    """The lines of a resolv.conf a resolver acts on (the rest is comments)."""

    nameservers: tuple[Address, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def parse_resolv_conf(text: str) -> ResolvConf:
    """As glibc reads it: ``nameserver`` lines (at most three, IPv6 with a zone dropped),
    the last ``search``/``domain`` line, ``options`` words; anything else ignored."""
    servers: list[Address] = []
    search: tuple[str, ...] = ()
    options: list[str] = []
    for line in _bounded(text).split("\n"):
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver" and len(servers) < MAX_NAMESERVERS:
            try:
                servers.append(ipaddress.ip_address(rest[0].split("%", 1)[0]))
            except ValueError:
                continue
        elif key in ("search", "domain"):
            search = tuple(w for w in rest if is_hostname(w))[:6] if key == "search" else (
                (rest[0],) if is_hostname(rest[0]) else ())  # fmt: skip
        elif key == "options":
            options.extend(w for w in rest if re.fullmatch(r"[A-Za-z0-9_-]+(:[0-9]+)?", w))
    return ResolvConf(tuple(servers), search, tuple(options))


def _bounded(text: str) -> str:
    """The first ``MAX_FILE_BYTES`` of a file, without a line cut in half there (a cut
    ``nameserver 10.0.0.22`` must not read as ``10.0.0.2``)."""
    if len(text) <= MAX_FILE_BYTES:
        return text
    return text[:MAX_FILE_BYTES].rpartition("\n")[0]


def is_hostname(text: str) -> bool:
    return bool(_HOSTNAME.fullmatch(text))


def render_resolv_conf(conf: ResolvConf, source: str) -> str:
    lines = [f"# The job's resolver, written by Lark ({source})."]
    lines += [f"nameserver {a}" for a in conf.nameservers]
    if conf.search:
        lines.append("search " + " ".join(conf.search))
    if conf.options:
        lines.append("options " + " ".join(conf.options))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Lan:
    """What a bridged job is on its LAN now (from its lease, or the admin's static address)."""

    address: ipaddress.IPv4Address | None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    domain: str | None = None
    hostname: str | None = None  # LarkHostname: the name the DHCP server gave the job


@dataclass(frozen=True)
class Sources:
    """What the decision reads: files' texts (None: no such file) and the job's mode."""

    node_resolv_conf: str | None  # the node's /etc/resolv.conf
    node_hosts: str | None  # the node's /etc/hosts
    admin_resolv_conf: str | None = None  # LARK_JOB_RESOLV_CONF's file
    netns_resolv_conf: str | None = None  # /etc/netns/<netns>/resolv.conf
    netns_hosts: str | None = None  # /etc/netns/<netns>/hosts
    bridged: bool = False
    networked: bool = True  # False in mode none: loopback only, no DNS relay
    job_dns: tuple[ipaddress.IPv4Address, ...] | None = None  # LARK_JOB_DNS (static)
    static: bool = False  # a bridged job with the admin's static address
    node_hostname: str = ""


@dataclass(frozen=True)
class JobView:
    """The job's two files (None: the node's own, not covered) and what makes its DNS work."""

    resolv_conf: str | None
    hosts: str | None
    dns_path: str  # for the log, the update ad (LarkJobDNS) and ``status``
    relayed: tuple[Service, ...] = ()  # the node's loopback resolvers, into the namespace
    servers: tuple[Address, ...] = field(default=())  # what the job's resolver asks

    def node_dns(self, is_local: Callable[[Address], bool]) -> tuple[Address, ...]:
        """The servers that are the node's own non-loopback addresses, either family: a
        NAT job's firewall opens port 53 to them (the rest of the node stays closed)."""
        return tuple(a for a in self.servers if not a.is_loopback and is_local(a))


def decide(src: Sources, lan: Lan | None = None) -> JobView:
    """The job's view now; for a bridged job call it again whenever ``lan`` changes."""
    hosts = _hosts(src, lan)
    admin = src.admin_resolv_conf
    if admin is not None:
        return _as_is(admin, "LARK_JOB_RESOLV_CONF", hosts, src)
    if src.netns_resolv_conf is not None:
        return _as_is(src.netns_resolv_conf, "/etc/netns", hosts, src)
    node = parse_resolv_conf(src.node_resolv_conf or "")
    if src.bridged and not src.static and lan is not None and lan.dns:
        search = (lan.domain,) if lan.domain and is_hostname(lan.domain) else ()
        conf = ResolvConf(lan.dns[:MAX_NAMESERVERS], search, node.options)
        path = "DHCP lease: " + " ".join(map(str, conf.nameservers))
        return JobView(
            render_resolv_conf(conf, "the DHCP lease"), hosts, path, (), conf.nameservers
        )
    if src.bridged and src.static and src.job_dns:
        conf = ResolvConf(src.job_dns[:MAX_NAMESERVERS], node.search, node.options)
        path = "LARK_JOB_DNS: " + " ".join(map(str, conf.nameservers))
        text = render_resolv_conf(conf, "LARK_JOB_DNS")
        return JobView(text, hosts, path, (), conf.nameservers)
    # (a file naming no server makes glibc ask 127.0.0.1: relayed like any loopback one)
    servers = node.nameservers or (ipaddress.IPv4Address("127.0.0.1"),)
    relayed = _relayed(servers, src.networked)
    path = "node: " + " ".join(
        f"{a} (relayed)" if any(s.address == a for s in relayed) else str(a) for a in servers
    )
    # (a bridged job always has a file of its own: a later lease may bring servers)
    own = (src.node_resolv_conf or "") if src.bridged else None
    if not node.nameservers:
        path = "node: no nameserver, 127.0.0.1" + (" (relayed)" if relayed else "")
    return JobView(own, hosts, path, relayed, servers)


def _as_is(text: str, source: str, hosts: str | None, src: Sources) -> JobView:
    conf = parse_resolv_conf(text)
    relayed = _relayed(conf.nameservers, src.networked)
    path = f"{source}: " + (" ".join(map(str, conf.nameservers)) or "no nameserver")
    return JobView(text, hosts, path, relayed, conf.nameservers)


def _relayed(servers: Sequence[Address], networked: bool) -> tuple[Service, ...]:
    if not networked:
        return ()
    found: list[Service] = []
    for a in servers:
        if a.is_loopback:
            for proto in (Proto.UDP, Proto.TCP):
                found.append(Service(proto, a, DNS_PORT, "DNS", checked=True))
    return tuple(dict.fromkeys(found))


def _hosts(src: Sources, lan: Lan | None) -> str | None:
    """The admin's ``/etc/netns/<netns>/hosts`` as it is; for a bridged job with an address,
    its own name and address first, then the node's file (getaddrinfo takes the first
    match, so the node's own hostname is the job's address inside the job, as it is for
    any other host on the LAN); otherwise the node's own file, not covered."""
    if src.netns_hosts is not None:
        return src.netns_hosts
    if not src.bridged or lan is None or lan.address is None:
        return None
    names: list[str] = []
    if lan.hostname and is_hostname(lan.hostname):
        short = lan.hostname.rstrip(".")
        if lan.domain and is_hostname(lan.domain) and "." not in short:
            names.append(f"{short}.{lan.domain.rstrip('.')}")
        names.append(short)
    if src.node_hostname and is_hostname(src.node_hostname):
        names.append(src.node_hostname)
    if not names:
        return None
    names = list(dict.fromkeys(names))
    head = "# This job's own address on the LAN, written by Lark.\n"
    line = f"{lan.address}\t{' '.join(names)}\n"
    return head + line + _without(src.node_hosts or "", set(names))


def _without(hosts: str, names: set[str]) -> str:
    """The node's hosts file with ``names`` taken off its lines (a line left with no name
    goes): getaddrinfo returns every address a name has there, loopback ones first, so a
    Debian node's ``127.0.1.1 NODE`` would win over the job's own line."""
    kept = []
    folded = {n.lower() for n in names}  # (glibc matches names whatever their case)
    for line in _bounded(hosts).splitlines():
        body, hash_, comment = line.partition("#")
        words = body.split()
        if len(words) < 2 or not folded.intersection(w.lower() for w in words[1:]):
            kept.append(line)
            continue
        rest = [w for w in words[1:] if w.lower() not in folded]
        if rest:
            kept.append(" ".join([words[0], *rest]) + (f" {hash_}{comment}" if hash_ else ""))
    return "".join(f"{k}\n" for k in kept)
