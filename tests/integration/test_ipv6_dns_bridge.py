"""A bridged job's resolver over IPv6: the DNS servers and search domains of the LAN's
router advertisements (RDNSS, DNSSL: RFC 8106) and of its DHCPv6 lease (options 23/24)
go into its own /etc/resolv.conf; on an IPv6-only node it resolves through IPv6 alone."""

from __future__ import annotations

import ipaddress
import re

from helpers.agent import python_job
from helpers.bridge import bridge_flags
from helpers.dns import machine_resolv_conf, needs_own_root, run, with_node_resolv_conf
from helpers.radvd import start_radvd
from sandbox import KEA6_DNS, KEA6_DOMAINS, SITE_NET6, start_kea6

RA_DNS = (f"{SITE_NET6}::53", f"{SITE_NET6}::55")
RA_DOMAINS = ("ra.lark.test",)

# the job's resolv.conf once it names ``want`` servers (the RA may come after the job
# starts: the file follows), or after 15 s
SHOW = """\
import re, sys, time
want, end = int(sys.argv[1]), time.time() + 15
while True:
    text = open('/etc/resolv.conf').read()
    if len(re.findall('^nameserver ', text, re.M)) >= want or time.time() > end:
        break
    time.sleep(0.05)
print(text + '=====', flush=True)
print(open('/etc/hosts').read(), flush=True)
"""


def files_of_bridged_job(sandbox, host, want: int, *flags: str) -> tuple[str, str]:
    needs_own_root()
    sandbox.kept_links.add("lark")
    before = machine_resolv_conf()
    argv = sandbox.agent_argv(
        host, *sandbox.who(), *bridge_flags(), *flags, "--", *python_job(SHOW), str(want)
    )
    result = run(with_node_resolv_conf(sandbox, "nameserver 127.0.0.53\nsearch node.test\n", argv))
    assert result.returncode == 0, result.stderr + sandbox.log_file.read_text()
    assert machine_resolv_conf() == before
    resolv, hosts = result.stdout.split("=====\n")
    return resolv, hosts


def test_on_an_ipv6_only_node_the_routers_advertised_dns_is_the_jobs(sandbox):
    host = sandbox.add_host(ipv4=False, ipv6=True)
    start_radvd(sandbox, rdnss=RA_DNS, dnssl=RA_DOMAINS)
    resolv, hosts = files_of_bridged_job(sandbox, host, 2)
    assert re.findall(r"^nameserver (\S+)$", resolv, re.M) == [f"{SITE_NET6}::53",
                                                              f"{SITE_NET6}::55"]  # fmt: skip
    assert re.findall(r"^search (.*)$", resolv, re.M) == ["ra.lark.test"]
    assert "127.0.0.53" not in resolv
    # its own name is its IPv6 address (it has no other)
    first = next(ln for ln in hosts.splitlines() if ln and not ln.startswith("#"))
    assert ipaddress.IPv6Address(first.split()[0]) in ipaddress.IPv6Network(f"{SITE_NET6}::/64")
    assert "DNS from the LAN's router advertisements now" in sandbox.log_file.read_text()


def test_dhcpv6_servers_come_before_the_routers_and_search_lists_merge(sandbox):
    host = sandbox.add_host(ipv4=False, ipv6=True)
    start_kea6(sandbox, timers=(30, 45, 50, 60))
    start_radvd(sandbox, managed=True, rdnss=RA_DNS, dnssl=RA_DOMAINS)
    resolv, _ = files_of_bridged_job(sandbox, host, 3)
    # the lease's two (RFC 8106 section 5.3.1: DHCPv6 first), then the RA's other one
    assert re.findall(r"^nameserver (\S+)$", resolv, re.M) == [*KEA6_DNS, f"{SITE_NET6}::55"]
    assert re.findall(r"^search (.*)$", resolv, re.M) == [" ".join([*KEA6_DOMAINS, *RA_DOMAINS])]
