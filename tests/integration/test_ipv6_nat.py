"""IPv6 for NAT jobs: NAT66 on dual-stack and IPv6-only execute hosts, LARK_IPV6's three
words, the job's IPv6 counted with its headers, guarded like its IPv4, and nothing left."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import classad2
import pytest
from helpers.agent import cleanup, killed_after_setup, python_job, read_update_ad
from helpers.dns import SITE_NAME, dns_queries, run, start_dns, with_node_resolv_conf
from helpers.ipv6 import IP_OVERHEAD, LISTEN, POOL6, SPOOF, fetch, start_piped
from helpers.scripts import calls, recorder
from helpers.udp import check_ipv6_counts, exchange, start_echo
from sandbox import FILE_SIZES, SITE_ADDR6, nft_job_objects, sh, wait_for


def test_a_dual_stack_jobs_ipv6_is_counted_with_its_neighbour_discovery(sandbox):
    """UDP datagrams over NAT66 to an echo server on the site and back (helpers/udp.py),
    each one IPv6 packet each way of 40 + 8 + its payload bytes. The job's IPv6 is counted
    at the IP layer on its veth: helpers/udp.py check_ipv6_counts holds it between what
    the job's kernel moved while the job ran and all it moved (its /proc/net/snmp6)."""
    host = sandbox.add_host(ipv6=True)
    start_echo(sandbox, SITE_ADDR6)
    r, ad, sent = exchange(sandbox, host, SITE_ADDR6)
    check_ipv6_counts(r, ad, sent)


def test_a_dual_stack_job_downloads_over_nat66_counted_with_its_headers(sandbox):
    host = sandbox.add_host(ipv6=True)
    result, ad_path = fetch(sandbox, host, sandbox.url6("10m"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(FILE_SIZES["10m"])
    ad = read_update_ad(ad_path)
    payload = FILE_SIZES["10m"]
    assert payload <= ad["NetworkIncomingIPv6"] <= payload * IP_OVERHEAD
    assert 0 < ad["NetworkOutgoingIPv6"] < payload * 0.05
    # the totals are both families: here (almost) all of it IPv6
    assert ad["NetworkIncomingIPv6"] <= ad["NetworkIncoming"] <= payload * IP_OVERHEAD
    inner, outer = (ipaddress.IPv6Address(ad[k]) for k in ("LarkInnerAddressIPv6",
                                                            "LarkExternalAddressIPv6"))  # fmt: skip
    assert inner in POOL6 and outer == inner - 1 and ad["LarkGatewayIPv6"] == str(outer)
    assert ad["LarkInnerAddressIPv4"].startswith("192.168.181.")
    assert "IPv6 nat66 from fd4c:6172:6b00::/64" in sandbox.log_file.read_text()


def test_the_site_sees_a_nat66_job_as_the_host(sandbox):
    host = sandbox.add_host(ipv6=True)
    accept = (
        "import socket, sys\n"
        "s = socket.create_server((sys.argv[1], 7777), family=socket.AF_INET6)\n"
        "print('ready', flush=True)\n"
        "print(s.accept()[1][0], flush=True)\n"
    )
    server = start_piped(sandbox, sandbox.site, accept, SITE_ADDR6)
    assert sandbox.read_line(server.stdout).strip() == "ready"
    dial = (
        "import socket, sys\n"
        "s = socket.create_connection((sys.argv[1], 7777)); print(s.getsockname()[0])\n"
    )
    result = sandbox.run_agent(host, *sandbox.who(), "--", *python_job(dial, SITE_ADDR6))
    assert result.returncode == 0, result.stderr
    assert ipaddress.IPv6Address(result.stdout.strip()) in POOL6  # the job's own address
    assert sandbox.read_line(server.stdout).strip() == host.address6  # the site sees the host's


def test_an_ipv6_only_host_runs_jobs_with_ipv6_only(sandbox):
    host = sandbox.add_host(ipv4=False, ipv6=True)
    result, ad_path = fetch(sandbox, host, sandbox.url6("1m"))
    assert result.returncode == 0, result.stderr
    ad = read_update_ad(ad_path)
    assert "LarkInnerAddressIPv4" not in ad and "LarkGateway" not in ad
    assert ipaddress.IPv6Address(ad["LarkInnerAddressIPv6"]) in POOL6
    assert FILE_SIZES["1m"] <= ad["NetworkIncomingIPv6"] == ad["NetworkIncoming"]
    assert "IPv6 only: the node has no IPv4 default route" in sandbox.log_file.read_text()
    routes = "import subprocess; print(open('/proc/net/route').read())"
    r = sandbox.run_agent(host, *sandbox.who(), "--", *python_job(routes))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1  # the header: no IPv4 route at all


def test_ipv6_on_refuses_a_job_on_a_node_without_ipv6(sandbox, host):
    result = sandbox.run_agent(host, *sandbox.who(), "--ipv6", "on", "--", "true")
    assert result.returncode == 125
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "LARK_IPV6 is on, but this node has no global IPv6 address" in lines[0]
    assert "Traceback" not in result.stderr


def test_ipv6_off_and_auto_without_node_ipv6_give_ipv4_only(sandbox, host):
    dual = sandbox.add_host(ipv6=True)
    for where, flags in ((dual, ("--ipv6", "off")), (host, ())):
        result, ad_path = fetch(sandbox, where, sandbox.url6("1k"), *flags)
        assert result.returncode != 0  # no IPv6 in the job
        ad = read_update_ad(ad_path)
        assert "LarkInnerAddressIPv6" not in ad and "NetworkIncomingIPv6" not in ad
        assert ad["LarkInnerAddressIPv4"].startswith("192.168.181.")
    assert "no IPv6 for the job: the node has no global IPv6 address" in (
        sandbox.log_file.read_text()
    )


def test_a_spoofed_ipv6_source_is_dropped(sandbox):
    host = sandbox.add_host(ipv6=True)
    listener = start_piped(sandbox, sandbox.site, LISTEN, SITE_ADDR6)
    assert sandbox.read_line(listener.stdout).strip() == "ready"
    name = sandbox.job_name()
    agent = sandbox.start_agent(host, *sandbox.who(name), "--", "sleep", "30")
    log = sandbox.log_file

    def ready() -> bool:
        return log.exists() and f"{name}: network ready" in log.read_text()

    assert wait_for(ready, 20), log.read_text() if log.exists() else "no log"
    inner = re.search(rf"{name}: addresses \S+ \(host\) / (fd\S+) \(job\)", log.read_text())
    assert inner is not None
    own, forged = inner.group(1), str(ipaddress.IPv6Address(inner.group(1)) + 100)
    sh("python3", "-c", SPOOF, SITE_ADDR6, forged, own, netns=f"lark-{name}")
    out, _ = listener.communicate(timeout=10)
    agent.terminate()
    agent.communicate(timeout=20)
    # the forged one never left the node; the job's own was masqueraded to the host's
    assert out.splitlines() == [f"{own} {host.address6}"]


def test_the_node_is_closed_to_an_ipv6_job_but_its_open_ports(sandbox):
    host = sandbox.add_host(ipv6=True)
    serve = (
        "import socket\n"
        "s = socket.create_server(('::', 3128), family=socket.AF_INET6)\n"
        "print('ready', flush=True)\n"
        "while True: s.accept()[0].close()\n"
    )
    server = start_piped(sandbox, host.netns, serve)
    assert sandbox.read_line(server.stdout).strip() == "ready"
    # the node's LAN address, and its address on the job's veth (the job's gateway, read
    # from the job's default route)
    dial = (
        "import ipaddress, socket, sys\n"
        "routes = [ln.split() for ln in open('/proc/net/ipv6_route')]\n"
        "gateway = [r[4] for r in routes if r[0] == '0' * 32 and r[1] == '00'][0]\n"
        "for addr in sys.argv[1], str(ipaddress.IPv6Address(bytes.fromhex(gateway))):\n"
        "    try: socket.create_connection((addr, 3128), 2).close(); print('open')\n"
        "    except OSError: print('closed')\n"
    )
    for flags, seen in (((), "closed"), (("--node-ports", "tcp 3128"), "open")):
        r = sandbox.run_agent(host, *sandbox.who(), *flags, "--", *python_job(dial, host.address6))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [seen, seen], flags


def test_forwarding_keeps_the_nodes_router_advertisements(sandbox):
    """A node that learns its IPv6 route by RA would lose it once forwarding is on
    (accept_ra 1 ignores RAs on a router): Lark sets 2 where it finds 1, and logs it."""
    host = sandbox.add_host(ipv6=True)
    knob = "/proc/sys/net/ipv6/conf/uplink/accept_ra"
    assert sh("cat", knob, netns=host.netns).stdout.strip() == "1"
    result = sandbox.run_agent(host, *sandbox.who(), "--", "true")
    assert result.returncode == 0, result.stderr
    assert sh("cat", knob, netns=host.netns).stdout.strip() == "2"
    forwarding = "/proc/sys/net/ipv6/conf/all/forwarding"
    assert sh("cat", forwarding, netns=host.netns).stdout.strip() == "1"
    assert "uplink now takes router advertisements with accept_ra 2" in (
        sandbox.log_file.read_text()
    )


def test_a_killed_ipv6_agents_leftovers_are_swept(sandbox):
    host = sandbox.add_host(ipv6=True)
    killed_after_setup(sandbox, host, sandbox.job_name())
    assert any("nat_sources6" in item for item in nft_job_objects(host.netns))
    locks = [p.name for p in sandbox.lock_dir.glob("addr-fd4c*.lock")]
    assert locks, list(sandbox.lock_dir.iterdir())
    result = cleanup(sandbox, host)
    assert result.returncode == 0, result.stderr
    assert nft_job_objects(host.netns) == []
    assert not list(sandbox.lock_dir.glob("addr-*.lock"))


@pytest.mark.parametrize("network", ["fd4c:6172:6b00:1::/64", "fd00:1:2::/48"])
def test_the_pool_is_the_admins(sandbox, network):
    host = sandbox.add_host(ipv6=True)
    result, ad_path = fetch(sandbox, host, sandbox.url6("1k"), "--local-network6", network)
    assert result.returncode == 0, result.stderr
    addr = ipaddress.IPv6Address(read_update_ad(ad_path)["LarkInnerAddressIPv6"])
    assert addr in ipaddress.IPv6Network(network)


SERVE_ONE = """\
import socket
s = socket.create_server(('::', 8081), family=socket.AF_INET6)
print('listening', flush=True)
conn, peer = s.accept()
print(peer[0], flush=True)
conn.close()
"""
DIAL = """\
import socket, sys
s = socket.create_connection((sys.argv[1], 8081), 5)
print(s.getsockname()[0])
"""


def routed_job(sandbox, host, prefix: str) -> tuple[subprocess.Popen, str]:
    """A routed job serving one connection on port 8081; its agent and its address."""
    name = sandbox.job_name()
    flags = ("--ipv6-mode", "routed", "--routed-prefix6", prefix)
    agent = sandbox.start_agent(host, *sandbox.who(name), *flags, "--", *python_job(SERVE_ONE))
    assert sandbox.read_line(agent.stdout).strip() == "listening"
    found = re.findall(
        rf"{name}: addresses \S+ \(host\) / (\S+) \(job\)", sandbox.log_file.read_text()
    )
    inner = [a for a in found if ":" in a]
    assert len(inner) == 1, found
    assert ipaddress.IPv6Address(inner[0]) in ipaddress.IPv6Network(prefix)
    return agent, inner[0]


def test_a_routed_job_is_reached_from_the_site_by_its_own_address(sandbox):
    host = sandbox.add_host(ipv6=True)
    prefix = "fd99:1::/64"
    sh("ip", "-6", "route", "add", prefix, "via", host.address6, netns=sandbox.site)
    agent, inner = routed_job(sandbox, host, prefix)
    dial = sh("python3", "-c", DIAL, inner, netns=sandbox.site)
    out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err
    assert out.strip() == dial.stdout.strip() == SITE_ADDR6  # no NAT either way
    assert "is on-link" not in sandbox.log_file.read_text()  # routed: no proxy


def test_a_routed_job_on_the_lans_prefix_is_answered_for_by_proxy_ndp(sandbox):
    host = sandbox.add_host(ipv6=True)
    agent, inner = routed_job(sandbox, host, "fd77:0:0:1::/64")  # the site LAN's own
    proxies = sh("ip", "-6", "neigh", "show", "proxy", netns=host.netns).stdout
    assert f"{inner} dev uplink" in proxies
    dial = sh("python3", "-c", DIAL, inner, netns=sandbox.site)
    out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err
    assert out.strip() == dial.stdout.strip() == SITE_ADDR6
    assert f"{inner} is on-link on uplink" in sandbox.log_file.read_text()
    assert sh("ip", "-6", "neigh", "show", "proxy", netns=host.netns).stdout.strip() == ""


def test_a_killed_routed_jobs_proxy_entry_is_swept(sandbox):
    host = sandbox.add_host(ipv6=True)
    flags = ("--ipv6-mode", "routed", "--routed-prefix6", "fd77:0:0:1::/64")
    killed_after_setup(sandbox, host, sandbox.job_name(), *flags)
    assert "proxy" in sh("ip", "-6", "neigh", "show", "proxy", netns=host.netns).stdout
    result = cleanup(sandbox, host)
    assert result.returncode == 0, result.stderr
    assert sh("ip", "-6", "neigh", "show", "proxy", netns=host.netns).stdout.strip() == ""


def test_callout_scripts_get_the_jobs_ipv6_in_their_environment(sandbox):
    host = sandbox.add_host(ipv6=True)
    env_out = sandbox.tmp / "create.env"
    create = recorder(sandbox, "create", extra=f"env > {env_out}")
    update = sandbox.tmp / "update.ad"
    r = sandbox.run_agent(
        host, *sandbox.who(), "--update-ad", str(update), "--create-script", str(create),
        "--", "true",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    env = dict(line.split("=", 1) for line in env_out.read_text().splitlines())
    assert env["LARK_INNER_ADDRESS_IPV6"] == ad["LarkInnerAddressIPv6"]
    assert env["LARK_EXTERNAL_ADDRESS_IPV6"] == ad["LarkExternalAddressIPv6"]
    [(args, _)] = calls(sandbox, "create")  # the original Lark's arguments: IPv4
    assert args[:2] == [ad["LarkExternalAddressIPv4"], ad["LarkInnerAddressIPv4"]]


def test_startd_attrs_says_where_jobs_get_ipv6(sandbox, host):
    dual = sandbox.add_host(ipv6=True)
    lock = ("--lock-dir", str(sandbox.lock_dir))

    def ipv6_attr(where, *flags: str) -> bool:
        argv = sandbox.agent_argv(where, *lock, *flags, verb="startd-attrs")
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return dict(classad2.parseOne(r.stdout, classad2.ParserType.Old).items())["LarkIPv6"]

    assert ipv6_attr(dual) is True
    assert ipv6_attr(dual, "--ipv6", "off") is False
    assert ipv6_attr(dual, "--firewall-backend", "iptables") is True  # (ip6tables is here)
    assert ipv6_attr(host, "--firewall-backend", "iptables") is False
    assert ipv6_attr(host) is False


def test_status_shows_a_running_jobs_ipv6(sandbox):
    host = sandbox.add_host(ipv6=True)
    name = sandbox.job_name()
    agent = sandbox.start_agent(host, *sandbox.who(name), "--", "sleep", "30")
    log = sandbox.log_file
    assert wait_for(lambda: log.exists() and f"{name}: network ready" in log.read_text(), 20)
    argv = sandbox.agent_argv(host, "--state-dir", str(sandbox.state_dir), "--json",
                              verb="status")  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    agent.terminate()
    agent.communicate(timeout=20)
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert ipaddress.IPv6Address(row["address6"]) in POOL6
    assert row["bytes_in_ipv6"] is not None


RESOLVE6 = """\
import socket, sys, urllib.request
(family, _, _, _, (addr, *_)), *_ = socket.getaddrinfo(sys.argv[1], 8080, socket.AF_INET6)
print("resolved", addr)
print("fetched", len(urllib.request.urlopen(f"http://{sys.argv[1]}:8080/1k", timeout=10).read()))
"""


def test_an_ipv6_only_job_resolves_through_the_nodes_ipv6_resolver(sandbox):
    """The node's resolver listens on the node's own IPv6 address: the job's firewall opens
    port 53 there (and nothing else of the node), and the name leads to the site."""
    host = sandbox.add_host(ipv4=False, ipv6=True)
    log = start_dns(sandbox, host.netns, host.address6, answer=SITE_ADDR6)
    argv = sandbox.agent_argv(host, *sandbox.who(), "--", *python_job(RESOLVE6), SITE_NAME)
    result = run(with_node_resolv_conf(sandbox, f"nameserver {host.address6}\n", argv))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["resolved", SITE_ADDR6, "fetched", "1000"]
    assert dns_queries(log) >= 1
    assert f"DNS on {host.address6}" in sandbox.log_file.read_text()


def test_a_connection_policy_decides_a_nat66_jobs_ipv6_by_its_ipv6_entries(sandbox):
    """The site's IPv6 web server allowed, everything else denied: IPv6 is no way around a
    policy that names only IPv4 (and the IPv4 entry does not open IPv6)."""
    host = sandbox.add_host(ipv6=True)
    serve = (
        "import socket, sys\n"
        "s = socket.create_server((sys.argv[1], 8081), family=socket.AF_INET6)\n"
        "print('ready', flush=True)\n"
        "while True: s.accept()[0].close()\n"
    )
    server = start_piped(sandbox, sandbox.site, serve, SITE_ADDR6)
    assert sandbox.read_line(server.stdout).strip() == "ready"  # (8081 open: not the policy)
    policy = f"allow tcp [{SITE_ADDR6}]:8080, allow tcp 10.77.0.1:8080"
    probe = (
        "import socket, sys\n"
        "for addr, port in (sys.argv[1], 8080), (sys.argv[1], 8081):\n"
        "    try:\n"
        "        socket.create_connection((addr, port), 3).close(); print('ok')\n"
        "    except OSError: print('refused')\n"
    )
    r = sandbox.run_agent(
        host, *sandbox.who(), "--connection-policy", policy, "--", *python_job(probe, SITE_ADDR6)
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "refused"]
    only4 = "allow tcp 10.77.0.1:8080"
    r = sandbox.run_agent(
        host, *sandbox.who(), "--connection-policy", only4, "--", *python_job(probe, SITE_ADDR6)
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused", "refused"]
    r = sandbox.run_agent(host, *sandbox.who(), "--", *python_job(probe, SITE_ADDR6))
    assert r.stdout.split() == ["ok", "ok"]  # (without a policy both are open)


NUD_PROBE = """\
import socket, struct, sys, time
# as the job's kernel probes its gateway (NUD, RFC 4861 7.3.3): a neighbour solicitation
# from its link-local address; the node must answer it with an advertisement
ifname, gateway = sys.argv[1], socket.inet_pton(socket.AF_INET6, sys.argv[2])
index = socket.if_nametoindex(ifname)
link_local = [ln.split()[0] for ln in open('/proc/net/if_inet6')
              if ln.split()[5] == ifname and ln.startswith('fe80')][0]
source = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(link_local))
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
s.bind((source, 0, 0, index))
s.settimeout(0.5)
for _ in range(6):
    s.sendto(struct.pack('!BBHI', 135, 0, 0, 0) + gateway, (sys.argv[2], 0, 0, index))
    end = time.time() + 0.5
    try:
        while time.time() < end:
            data, peer = s.recvfrom(2000)
            if data[0] == 136 and data[8:24] == gateway:
                print('answered', flush=True)
                sys.exit(0)
    except socket.timeout:
        pass
print('silent', flush=True)
"""


def test_the_node_answers_the_jobs_link_local_neighbour_probes(sandbox):
    """The spoof rule lets the job's link-local source through: the kernel's reachability
    probes of its gateway come from it, and a dropped one would cut the job off for
    seconds whenever its gateway's entry goes stale."""
    host = sandbox.add_host(ipv6=True)
    name = sandbox.job_name()
    update = sandbox.tmp / "update.ad"
    agent = sandbox.start_agent(
        host, *sandbox.who(name), "--update-ad", str(update), "--", "sleep", "30"
    )
    log = sandbox.log_file
    assert wait_for(lambda: log.exists() and f"{name}: network ready" in log.read_text(), 20)
    assert wait_for(update.exists, 10)
    gateway = read_update_ad(update)["LarkGatewayIPv6"]
    probe = sh("python3", "-c", NUD_PROBE, f"i_{name}", gateway, netns=f"lark-{name}")
    agent.terminate()
    agent.communicate(timeout=20)
    assert probe.stdout.strip() == "answered"
