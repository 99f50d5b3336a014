"""IPv6 for NAT jobs with LARK_FIREWALL_BACKEND iptables, in each iptables build here: the
job's IPv6 in the matching ip6tables build, counted with its headers, guarded, put back after a
flush and swept, as the nftables backend does it (test_ipv6_nat.py)."""

from __future__ import annotations

import ipaddress
import re
import subprocess

import pytest
from helpers.agent import cleanup, killed_after_setup, python_job, read_update_ad
from helpers.dns import SITE_NAME, dns_queries, run, start_dns, with_node_resolv_conf
from helpers.firewall import BACKENDS, fetch_around_a_flush
from helpers.ipv6 import IP_OVERHEAD, LISTEN, POOL6, SPOOF, fetch, start_piped
from helpers.udp import check_ipv6_counts, exchange, start_echo
from sandbox import FILE_SIZES, SITE_ADDR6, iptables_job_objects, sh, wait_for

IPTABLES = {name: flags for name, flags in BACKENDS.items() if flags[1] == "iptables"}


@pytest.fixture(params=list(IPTABLES))
def backend(request) -> tuple[str, ...]:
    return IPTABLES[request.param]


def build6(backend: tuple[str, ...]) -> str:
    """The ip6tables build of the backend's LARK_IPTABLES (iptables-nft: ip6tables-nft)."""
    return "ip6" + backend[3].removeprefix("ip")


def saved(host, build: str, table: str = "filter") -> str:
    return sh(f"{build}-save", "-t", table, netns=host.netns).stdout


def test_a_dual_stack_jobs_ipv6_is_counted_with_its_neighbour_discovery(sandbox, backend):
    """UDP datagrams over NAT66 to an echo server on the site and back (helpers/udp.py),
    each one IPv6 packet each way of 40 + 8 + its payload bytes. The job's IPv6 is counted
    at the IP layer on its veth: helpers/udp.py check_ipv6_counts holds it between what
    the job's kernel moved while the job ran and all it moved (its /proc/net/snmp6)."""
    host = sandbox.add_host(ipv6=True)
    start_echo(sandbox, SITE_ADDR6)
    r, ad, sent = exchange(sandbox, host, SITE_ADDR6, *backend, "--ipv6", "on")
    check_ipv6_counts(r, ad, sent)


def test_a_dual_stack_job_downloads_over_nat66_counted_with_its_headers(sandbox, backend):
    host = sandbox.add_host(ipv6=True)
    result, ad_path = fetch(sandbox, host, sandbox.url6("1m"), *backend, "--ipv6", "on")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(FILE_SIZES["1m"])
    ad = read_update_ad(ad_path)
    payload = FILE_SIZES["1m"]
    assert payload <= ad["NetworkIncomingIPv6"] <= payload * IP_OVERHEAD
    assert 0 < ad["NetworkOutgoingIPv6"] < payload * 0.05
    # the totals are both families' (both chains summed): here (almost) all of it IPv6
    assert ad["NetworkIncomingIPv6"] <= ad["NetworkIncoming"] <= payload * IP_OVERHEAD
    assert ad["NetworkOutgoingIPv6"] <= ad["NetworkOutgoing"]
    inner = ipaddress.IPv6Address(ad["LarkInnerAddressIPv6"])
    assert inner in POOL6 and ad["LarkInnerAddressIPv4"].startswith("192.168.181.")


def test_an_ipv6_only_host_runs_jobs_with_ipv6_only(sandbox, backend):
    host = sandbox.add_host(ipv4=False, ipv6=True)
    result, ad_path = fetch(sandbox, host, sandbox.url6("1m"), *backend)
    assert result.returncode == 0, result.stderr
    ad = read_update_ad(ad_path)
    assert "LarkInnerAddressIPv4" not in ad
    assert ipaddress.IPv6Address(ad["LarkInnerAddressIPv6"]) in POOL6
    assert FILE_SIZES["1m"] <= ad["NetworkIncomingIPv6"] == ad["NetworkIncoming"]


def test_a_spoofed_ipv6_source_is_dropped_and_the_own_one_masqueraded(sandbox, backend):
    """And the running job's chains are in both builds, as dump-firewall shows them."""
    host = sandbox.add_host(ipv6=True)
    listener = start_piped(sandbox, sandbox.site, LISTEN, SITE_ADDR6)
    assert sandbox.read_line(listener.stdout).strip() == "ready"
    name = sandbox.job_name()
    agent = sandbox.start_agent(host, *sandbox.who(name), *backend, "--", "sleep", "30")
    log = sandbox.log_file
    assert wait_for(lambda: log.exists() and f"{name}: network ready" in log.read_text(), 20)
    inner = re.search(rf"{name}: addresses \S+ \(host\) / (fd\S+) \(job\)", log.read_text())
    assert inner is not None
    own, forged = inner.group(1), str(ipaddress.IPv6Address(inner.group(1)) + 100)
    sh("python3", "-c", SPOOF, SITE_ADDR6, forged, own, netns=f"lark-{name}")
    dump = sh(*sandbox.agent_argv(host, verb="dump-firewall")[2:], *backend[2:],
              netns=host.netns).stdout  # fmt: skip
    out, _ = listener.communicate(timeout=10)
    agent.terminate()
    agent.communicate(timeout=20)
    # the forged one never left the node; the job's own went out as the host's address
    assert out.splitlines() == [f"{own} {host.address6}"]
    assert f"# ip6tables ({build6(backend)}): Lark's chains and rules" in dump
    assert "OutgoingIPv6" in dump and "MASQUERADE" in dump


def test_the_node_is_closed_to_an_ipv6_job_but_its_open_ports(sandbox, backend):
    host = sandbox.add_host(ipv6=True)
    serve = (
        "import socket\n"
        "s = socket.create_server(('::', 3128), family=socket.AF_INET6)\n"
        "print('ready', flush=True)\n"
        "while True: s.accept()[0].close()\n"
    )
    server = start_piped(sandbox, host.netns, serve)
    assert sandbox.read_line(server.stdout).strip() == "ready"
    # the node's address on the site LAN, and its own end of the job's veth (the job's
    # gateway: the default route's)
    dial = (
        "import socket, sys\n"
        "gateway = next(l.split()[4] for l in open('/proc/net/ipv6_route')\n"
        "               if l.split()[0] == '0' * 32 and l.split()[4] != '0' * 32)\n"
        "gateway = ':'.join(gateway[i:i + 4] for i in range(0, 32, 4))\n"
        "for where in (sys.argv[1], gateway):\n"
        "    try: socket.create_connection((where, 3128), 2).close(); print('open')\n"
        "    except OSError: print('closed')\n"
    )
    for flags, seen in (((), "closed"), (("--node-ports", "tcp 3128"), "open")):
        argv = python_job(dial, host.address6)
        r = sandbox.run_agent(host, *sandbox.who(), *backend, *flags, "--", *argv)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [seen, seen], flags


def test_a_flushed_ip6tables_is_restored_and_counting_carries_on(sandbox, backend):
    host = sandbox.add_host(ipv6=True)
    url = sandbox.url6("1m")
    before, final = fetch_around_a_flush(
        sandbox,
        host,
        backend,
        (build6(backend), "-w", "-F"),
        url=url,
        counter="NetworkIncomingIPv6",
    )
    size = FILE_SIZES["1m"]
    assert before >= size and 2 * size <= final <= 2 * size * IP_OVERHEAD
    total = read_update_ad(sandbox.tmp / "update.ad")["NetworkIncoming"]
    assert final <= total <= 2 * size * IP_OVERHEAD  # (the IPv4 part, zeroed with it, is ~0)
    emptied = f"its chain LARK_{sandbox.job_name()} was emptied; its jump from FORWARD is gone"
    assert re.search(
        rf"{emptied}.*\({build6(backend)}\): restoring it", sandbox.log_file.read_text()
    )


def test_a_nat66_source_removed_from_outside_is_restored(sandbox, backend):
    host = sandbox.add_host(ipv6=True)
    chain = f"LARK_{sandbox.job_name()}"

    def unmasquerade(address: str) -> None:
        rule = f"-s {address}/128 ! -o e_+ -m comment --comment {chain} -j MASQUERADE"
        sh(build6(backend), "-w", "-t", "nat", "-D", "POSTROUTING", *rule.split(),
           netns=host.netns)  # fmt: skip

    before, final = fetch_around_a_flush(
        sandbox, host, backend, unmasquerade, url=sandbox.url6("1m"),
        counter="NetworkIncomingIPv6", address="LarkInnerAddressIPv6",
    )  # fmt: skip
    size = FILE_SIZES["1m"]
    assert before >= size and 2 * size <= final <= 2 * size * IP_OVERHEAD
    assert "NAT source fd4c:6172:6b00:" in sandbox.log_file.read_text()


def test_a_routed_job_is_reached_from_the_site_and_not_masqueraded(sandbox, backend):
    host = sandbox.add_host(ipv6=True)
    prefix = "fd99:1::/64"
    sh("ip", "-6", "route", "add", prefix, "via", host.address6, netns=sandbox.site)
    serve = (
        "import socket\n"
        "s = socket.create_server(('::', 8081), family=socket.AF_INET6)\n"
        "print('listening', flush=True)\n"
        "conn, peer = s.accept(); print(peer[0], flush=True); conn.close()\n"
    )
    name = sandbox.job_name()
    flags = ("--ipv6-mode", "routed", "--routed-prefix6", prefix)
    agent = sandbox.start_agent(host, *sandbox.who(name), *backend, *flags, "--",
                                *python_job(serve))  # fmt: skip
    assert sandbox.read_line(agent.stdout).strip() == "listening"
    found = re.findall(rf"{name}: addresses \S+ \(host\) / (\S+) \(job\)",
                       sandbox.log_file.read_text())  # fmt: skip
    [inner] = [a for a in found if ":" in a]
    assert "MASQUERADE" not in saved(host, build6(backend), "nat")
    dial = "import socket, sys; print(socket.create_connection((sys.argv[1], 8081), 5)" \
           ".getsockname()[0])"  # fmt: skip
    seen = sh("python3", "-c", dial, inner, netns=sandbox.site).stdout.strip()
    out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err
    assert out.strip() == seen == SITE_ADDR6  # no NAT either way


@pytest.mark.parametrize("record", [True, False], ids=["by its record", "by name"])
def test_a_killed_agents_ip6tables_rules_are_swept(sandbox, backend, record):
    host = sandbox.add_host(ipv6=True)
    name = sandbox.job_name()
    killed_after_setup(sandbox, host, name, *backend)
    left = iptables_job_objects(host.netns)
    ip6 = [line for line in left if line.startswith(f"{build6(backend)}-save")]
    assert any(f"LARK_{name}" in line and "MASQUERADE" in line for line in ip6), left
    assert any(f"-A LARK_{name}" in line and "OutgoingIPv6" in line for line in ip6), left
    if not record:
        (sandbox.state_dir / f"{name}.json").unlink()
    result = cleanup(sandbox, host)
    assert result.returncode == 0, result.stderr
    assert iptables_job_objects(host.netns) == []
    assert not list(sandbox.lock_dir.glob("addr-*.lock"))


@pytest.mark.parametrize("backend6", list(BACKENDS))
def test_an_ip6tables_forward_drop_is_opened_for_the_jobs_ipv6(sandbox, backend6):
    """Either backend: the ip6tables build whose FORWARD drops gets the job's IPv6 accepted
    in its LARK-FORWARD (the nftables backend's job on the legacy build, here)."""
    flags = BACKENDS[backend6]
    build = build6(flags) if flags[1] == "iptables" else "ip6tables-legacy"
    host = sandbox.add_host(ipv6=True)
    sh(build, "-w", "-P", "FORWARD", "DROP", netns=host.netns)
    result, ad_path = fetch(sandbox, host, sandbox.url6("1m"), *flags)
    assert result.returncode == 0, result.stderr
    assert read_update_ad(ad_path)["NetworkIncomingIPv6"] >= FILE_SIZES["1m"]
    log = sandbox.log_file.read_text()
    assert f"FORWARD policy DROP on this node ({build}): accepting the job's traffic" in log
    after = saved(host, build)
    assert ":FORWARD DROP" in after and "LARK" not in after  # the node's own, as it was


# Another job: a TCP service on port 7001 of its IPv6 address, which it prints; serves until
# its stdin ends.
SERVICE6 = f"""
import socket, sys, threading
s = socket.create_server(('::', 7001), family=socket.AF_INET6)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.connect(('{SITE_ADDR6}', 9))
print(u.getsockname()[0], flush=True)
threading.Thread(target=lambda: [s.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
sys.stdin.readline()
"""
DIAL6 = """
import socket, sys
for where in sys.argv[1:]:
    try: socket.create_connection((where, 7001), 1.5).close(); print('open')
    except OSError: print('closed')
"""


@pytest.mark.parametrize("together", [False, True], ids=["apart", "job-to-job"])
def test_another_jobs_ipv6_is_closed_unless_job_to_job_and_the_node_reaches_it(
    sandbox, backend, together
):
    host = sandbox.add_host(ipv6=True)
    flags = (*backend, *(["--job-to-job"] if together else []))
    argv = sandbox.agent_argv(host, *sandbox.who(sandbox.job_name("b")), *flags, "--",
                              *python_job(SERVICE6))  # fmt: skip
    other = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sandbox.procs.append(other)
    inner = sandbox.read_line(other.stdout).strip()
    assert ipaddress.IPv6Address(inner) in POOL6
    r = sandbox.run_agent(host, *sandbox.who(sandbox.job_name("a")), *flags, "--",
                          *python_job(DIAL6, inner))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["open" if together else "closed"]
    node = sh("python3", "-c", DIAL6, inner, netns=host.netns).stdout.split()
    assert node == ["open"]  # the node still reaches a job over IPv6
    other.stdin.write("\n")
    other.stdin.flush()
    assert other.wait(timeout=30) == 0


def test_an_ipv6_only_job_resolves_through_the_nodes_ipv6_resolver(sandbox, backend):
    """Port 53 on the node's own IPv6 address is opened in the ip6tables chain (and nothing
    else of the node), and the name leads to the site."""
    host = sandbox.add_host(ipv4=False, ipv6=True)
    log = start_dns(sandbox, host.netns, host.address6, answer=SITE_ADDR6)
    resolve = (
        "import socket, sys, urllib.request\n"
        "addr = socket.getaddrinfo(sys.argv[1], 8080, socket.AF_INET6)[0][4][0]\n"
        "print('resolved', addr)\n"
        "print('fetched', len(urllib.request.urlopen(f'http://{sys.argv[1]}:8080/1k', "
        "timeout=10).read()))\n"
    )
    argv = sandbox.agent_argv(host, *sandbox.who(), *backend, "--",
                              *python_job(resolve, SITE_NAME))  # fmt: skip
    result = run(with_node_resolv_conf(sandbox, f"nameserver {host.address6}\n", argv))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["resolved", SITE_ADDR6, "fetched", "1000"]
    assert dns_queries(log) >= 1
