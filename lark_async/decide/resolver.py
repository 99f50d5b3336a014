"""The job's ``/etc/resolv.conf`` and ``/etc/hosts``: what they say, and what it takes for
them to work from the job's namespace. Pure: texts and addresses in, a ``JobView`` out.

Where the job's DNS comes from, first that applies:

1. the admin's file, as it is: ``LARK_JOB_RESOLV_CONF``, else the iproute2 convention
   ``/etc/netns/<netns>/resolv.conf`` (what ``ip netns exec`` bind-mounts);
2. bridge mode with DHCP: what the LAN says, kept current as it changes: the DHCP
   lease's servers (option 6) and domain (option 15), the DHCPv6 lease's (options 23, 24)
   and the routers' (RDNSS, DNSSL: RFC 8106), so a job on an IPv6-only LAN resolves
   through IPv6 (``merge_servers`` says in what order); with a static address:
   ``LARK_JOB_DNS``;
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
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .reach import Proto, Service

MAX_FILE_BYTES = 64 * 1024  # a resolv.conf or hosts file we read or write
MAX_NAMESERVERS = 3  # glibc's MAXNS: later lines are ignored by the resolver
MAX_SEARCH = 6  # glibc's MAXDNSRCH before 2.26, musl's still
MAX_SEARCH_CHARS = 255  # the domains of a search line, spaces between: char[256] in both
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
            search = tuple(w for w in rest if is_hostname(w))[:MAX_SEARCH] if key == "search" else (
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
    """What a bridged job is on its LAN now (from its leases and its routers' RAs, or the
    admin's static address). Domains and names come from the LAN and are checked here."""

    address: ipaddress.IPv4Address | None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    domain: str | None = None
    hostname: str | None = None  # LarkHostname: the name the DHCP server gave the job
    dhcp6_dns: tuple[ipaddress.IPv6Address, ...] = ()  # DHCPv6 option 23 (RFC 3646)
    dhcp6_domains: tuple[str, ...] = ()  # DHCPv6 option 24
    ra_dns: tuple[ipaddress.IPv6Address, ...] = ()  # RDNSS (backends/lan/ndopt.py)
    ra_domains: tuple[str, ...] = ()  # DNSSL
    link: str | None = None  # the job's interface in its namespace: link-local servers' zone
    address6: ipaddress.IPv6Address | None = None  # its global IPv6 (a lease's, or SLAAC's)


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
    if src.bridged and not src.static and lan is not None:
        view = _lan_view(lan, node, hosts)
        if view is not None:
            return view
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


def _lan_view(lan: Lan, node: ResolvConf, hosts: str | None) -> JobView | None:
    """What the LAN says, with the node's options; None when it names no server."""
    servers = merge_servers(lan)
    if not servers:
        return None
    search = merge_search(lan)
    conf = ResolvConf(tuple(a for a, _ in servers), tuple(d for d, _ in search), node.options)
    used = {where for _, where in (*servers, *search)}
    heads = [head for where, head in _HEADS.items() if where in used]
    source = " and ".join(filter(None, [", ".join(heads[:-1]), heads[-1]]))
    path = "; ".join(
        f"{where}: " + " ".join(str(a) for a, w in servers if w == where)
        for where in _HEADS
        if any(w == where for _, w in servers)
    )
    return JobView(render_resolv_conf(conf, source), hosts, path, (), conf.nameservers)


# where what a bridged job's file says comes from: its name in the path, and in the head
_HEADS = {
    "DHCP lease": "the DHCP lease",
    "DHCPv6": "the DHCPv6 lease",
    "RA": "router advertisements",
}
_IFNAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}")


def merge_servers(lan: Lan) -> tuple[tuple[Address, str], ...]:
    """The job's servers and where each came from, at most ``MAX_NAMESERVERS``: IPv4 and
    IPv6 ones in turn, IPv4 first (the DHCP lease's order; DHCPv6's before the RAs', as RFC
    8106 section 5.3.1 asks), each once.

    In turn rather than family after family: glibc asks the servers in order, moving on
    after a timeout, so when one family's path is broken (a dual-stack LAN is rarely
    broken in both) the next server is of the other, and a DHCP lease of three servers
    does not shut out the IPv6 ones. A job on an IPv6-only LAN gets its IPv6 ones alone.

    A link-local IPv6 server is written with the job's interface as its zone (glibc reads
    ``fe80::1%i_job``); without ``lan.link`` it is left out. Unspecified, loopback,
    multicast and IPv4-mapped IPv6 addresses serve no one on the LAN and are left out."""
    v4 = _once((a, "DHCP lease") for a in lan.dns)
    v6 = _once(
        (z, where)
        for where, found in (("DHCPv6", lan.dhcp6_dns), ("RA", lan.ra_dns))
        for a in found
        if (z := _zoned(a, lan.link)) is not None
    )
    turns = [s for pair in itertools.zip_longest(v4, v6) for s in pair if s is not None]
    return tuple(turns[:MAX_NAMESERVERS])


def _once(found: Iterable[tuple[Address, str]]) -> list[tuple[Address, str]]:
    kept: dict[Address, tuple[Address, str]] = {}
    for a, where in found:
        kept.setdefault(a, (a, where))
    return list(kept.values())


def _zoned(a: ipaddress.IPv6Address, link: str | None) -> ipaddress.IPv6Address | None:
    plain = ipaddress.IPv6Address(a.packed)  # (any zone it came with is not the job's)
    if plain.is_unspecified or plain.is_loopback or plain.is_multicast or plain.ipv4_mapped:
        return None
    if not plain.is_link_local:
        return plain
    if link is None or not _IFNAME.fullmatch(link):
        return None
    return ipaddress.IPv6Address(f"{plain}%{link}")


def merge_search(lan: Lan) -> tuple[tuple[str, str], ...]:
    """The job's search domains and where each came from: the DHCP lease's domain, then
    DHCPv6's, then the RAs', each once (whatever its case or final dot), at most
    ``MAX_SEARCH`` and ``MAX_SEARCH_CHARS`` in all (a domain that would not fit is left
    out, a later shorter one may). Names that are not hostnames are left out."""
    found = [("DHCP lease", lan.domain)] if lan.domain is not None else []
    found += [("DHCPv6", d) for d in lan.dhcp6_domains] + [("RA", d) for d in lan.ra_domains]
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    chars = -1  # (no space before the first)
    for where, name in found:
        key = name.rstrip(".").lower()
        if not is_hostname(name) or key in seen or chars + 1 + len(name) > MAX_SEARCH_CHARS:
            continue
        kept.append((name, where))
        seen.add(key)
        chars += 1 + len(name)
        if len(kept) == MAX_SEARCH:
            break
    return tuple(kept)


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
    if not src.bridged or lan is None:
        return None
    addresses = [a for a in (lan.address, lan.address6) if a is not None]
    if not addresses:  # (IPv4 first: a dual-stack job's own name answers both families)
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
    lines = "".join(f"{a}\t{' '.join(names)}\n" for a in addresses)
    return head + lines + _without(src.node_hosts or "", set(names))


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
