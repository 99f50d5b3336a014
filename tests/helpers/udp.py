"""UDP datagrams of known sizes, for counts that must be exact: an echo server on the site
and a job's exchange with it, both for either family (an address with ``:`` is IPv6).

One datagram is one IP packet each way (never fragmented: path MTU discovery is on, so an
oversized one fails instead), of ``header(address) + payload`` bytes."""

from __future__ import annotations

import sys

from sandbox import sh, wait_for

from helpers.agent import python_job, read_update_ad

# python3 -c ECHO ADDRESS PORT: send back every datagram to where it came from
ECHO = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""

# python3 -c EXCHANGE ADDRESS PORT SIZE...: each size to the echo server and back, one at a
# time; prints "echoed" (and for IPv6 then its kernel's Ip6OutOctets and Ip6InOctets before
# the exchange, and after it)
EXCHANGE = """
import socket, sys
six = ":" in sys.argv[1]
def octets():  # every IPv6 byte the job's kernel sent and received: its own, ICMPv6 too
    found = dict(line.split() for line in open("/proc/net/snmp6"))
    return found["Ip6OutOctets"] + " " + found["Ip6InOctets"]
before = octets() if six else ""
s = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_DGRAM)
# IP_MTU_DISCOVER / IPV6_MTU_DISCOVER: *_PMTUDISC_DO, never fragmented
s.setsockopt(socket.IPPROTO_IPV6, 23, 2) if six else s.setsockopt(socket.IPPROTO_IP, 10, 2)
s.settimeout(5)
for size in map(int, sys.argv[3:]):
    s.sendto(bytes(size), (sys.argv[1], int(sys.argv[2])))
    assert len(s.recv(65535)) == size
print("echoed")
if six:
    print(before, octets())
"""

SIZES = [0, 1, 100, 1000]  # and the most one 1500-byte packet carries: max_payload()


def header(address: str) -> int:
    """An IP packet's bytes besides its UDP payload: IPv6's 40 or IPv4's 20, and UDP's 8."""
    return (40 if ":" in address else 20) + 8


def max_payload(address: str, mtu: int = 1500) -> int:
    return mtu - header(address)


def start_echo(sandbox, address: str, port: int = 7) -> None:
    """The echo server on the site, bound before this returns."""
    sandbox.start_in(sandbox.site, [sys.executable, "-c", ECHO, address, str(port)])
    bound = f"[{address}]:{port} " if ":" in address else f"{address}:{port} "
    assert wait_for(lambda: bound in sh("ss", "-uln", netns=sandbox.site).stdout), (
        "the echo server never bound its port"
    )


def exchange(sandbox, host, address: str, *flags: str, port: int = 7):
    """A job that exchanges SIZES and the largest unfragmented datagram with the echo server
    and sends nothing else: (its result, its update ad, the IP bytes each way)."""
    sizes = [*SIZES, max_payload(address)]
    update = sandbox.tmp / f"{sandbox.job_name()}.update.ad"
    job = python_job(EXCHANGE, address, str(port), *map(str, sizes))
    result = sandbox.run_agent(host, *sandbox.who(), "--update-ad", str(update), *flags, "--", *job)
    return (
        result,
        read_update_ad(update) if update.exists() else {},
        sum(header(address) + size for size in sizes),
    )


def check_ipv6_counts(result, ad, sent: int) -> None:
    """A dual-stack job's IPv6 after ``exchange`` (IPv6 at the IP layer on its veth, and
    IPv6 has no ARP: its neighbour discovery and MLD are IPv6 packets too). Each way the
    count holds every IPv6 byte the job's kernel moved while the job ran (the datagrams and
    the neighbour discovery they needed) and nothing the kernel never moved: at most its
    total since the namespace was made (with the DAD and MLD before the job). IPv4: none."""
    assert result.returncode == 0, result.stderr
    echoed, octets = result.stdout.splitlines()
    out_before, in_before, out_after, in_after = map(int, octets.split())
    assert echoed == "echoed"
    assert sent <= out_after - out_before <= ad["NetworkOutgoingIPv6"] <= out_after
    assert sent <= in_after - in_before <= ad["NetworkIncomingIPv6"] <= in_after
    assert (ad["NetworkOutgoing"], ad["NetworkIncoming"]) == (
        ad["NetworkOutgoingIPv6"],
        ad["NetworkIncomingIPv6"],
    )
