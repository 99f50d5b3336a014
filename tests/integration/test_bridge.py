"""Bridge mode end to end: the job on the site LAN with its own address, counted, unspoofable."""

from __future__ import annotations

import ipaddress
import re
import time

from helpers.agent import cleanup, python_job, read_update_ad, run_fetch
from helpers.bridge import STATIC, bridge_flags, static_flags
from helpers.dhcp import POOL
from helpers.firewall import fetch_around_a_flush
from sandbox import FILE_SIZES, HTTP_PORT, SITE_ADDR, SITE_NET, sh, start_kea


def test_a_static_job_downloads_through_a_bridge_made_from_the_uplink(sandbox, host):
    sandbox.kept_links.add("lark")
    r, ad_path = run_fetch(sandbox, host, "1m", *static_flags())
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    assert r.stdout.strip() == str(FILE_SIZES["1m"])
    ad = read_update_ad(ad_path)
    assert ad["LarkNetworkType"] == "bridge" and ad["LarkAddressType"] == "static"
    assert ad["LarkInnerAddressIPv4"] == STATIC and ad["LarkGateway"] == SITE_ADDR
    assert ad["LarkBridgeName"] == "lark"
    payload = FILE_SIZES["1m"]
    assert payload <= ad["NetworkIncoming"] <= payload * 1.06
    assert 0 < ad["NetworkOutgoing"] < payload * 0.05
    # the host kept its address and its way to the site, now through the bridge
    addrs = sh("ip", "-o", "-4", "addr", "show", "dev", "lark", netns=host.netns).stdout
    assert f"{host.address}/24" in addrs
    route = sh("ip", "route", "show", "default", netns=host.netns).stdout
    assert f"via {SITE_ADDR} dev lark" in route
    sandbox.wait_for_port(host.netns, SITE_ADDR, HTTP_PORT, timeout=2)


SPOOF = """
import socket, subprocess, sys
site, port, ifname = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def attempt(src=None):
    s = socket.socket()
    s.settimeout(1.0)
    try:
        if src:
            s.bind((src, 0))
        s.connect((site, port))
        return "ok"
    except OSError:
        return "blocked"
    finally:
        s.close()

print(attempt())
subprocess.run(["ip", "addr", "add", sys.argv[4] + "/24", "dev", ifname], check=True)
print(attempt(sys.argv[4]))
subprocess.run(["ip", "addr", "del", sys.argv[4] + "/24", "dev", ifname], check=True)
subprocess.run(["ip", "link", "set", ifname, "address", "02:11:22:33:44:55"], check=True)
subprocess.run(["ip", "neigh", "flush", "all"], check=True)
print(attempt())
"""


def test_a_job_cannot_send_from_another_address_or_mac(sandbox, host):
    """Even a job running as root in its namespace (which may change its address and MAC)
    gets nothing out but what is its own."""
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    r = sandbox.run_agent(
        host,
        "--user",
        "root",
        "--allow-root",
        "--name",
        name,
        *static_flags(),
        "--",
        *python_job(SPOOF, SITE_ADDR, str(HTTP_PORT), f"i_{name}", f"{SITE_NET}.61"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "blocked", "blocked"]


SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(b"x" * 1000, (sys.argv[1], 9))
"""


def test_bridge_accounting_counts_ip_bytes_exactly(sandbox, host):
    sandbox.kept_links.add("lark")
    ad_path = sandbox.tmp / "udp.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *static_flags(),
        "--",
        *python_job(SEND, SITE_ADDR),
    )
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(ad_path)
    assert ad["NetworkOutgoing"] == 3 * (20 + 8 + 1000)  # IPv4 + UDP headers, no Ethernet


def one_line_error(r) -> str:
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_bridge_setup_failures_are_one_line_and_leave_nothing(sandbox, host):
    run = lambda *flags: sandbox.run_agent(host, *sandbox.who(), *flags, "--", "true")  # noqa: E731
    assert one_line_error(run("--network-type", "bridge")) == (
        "lark-agent: error: bridge lark does not exist and no LARK_BRIDGE_DEVICE is set to "
        "make it from"
    )
    assert one_line_error(run(*bridge_flags()[:2], "--bridge-device", "nope0")) == (
        "lark-agent: error: bridge device nope0 does not exist"
    )
    assert one_line_error(run("--network-type", "bridge", "--bridge-name", "uplink")) == (
        "lark-agent: error: uplink exists but is not a bridge (veth)"
    )
    sh("ip", "link", "add", "down0", "type", "veth", "peer", "name", "down1", netns=host.netns)
    assert one_line_error(run(*bridge_flags()[:2], "--bridge-device", "down0")) == (
        "lark-agent: error: bridge device down0 is down (no carrier or not up)"
    )
    sh("ip", "link", "del", "down0", netns=host.netns)
    assert one_line_error(run(*bridge_flags("--bridge-name", "../x"))) == (
        'lark-agent: error: LARK_BRIDGE_NAME "../x" (command line --bridge-name) is not an '
        "interface name (1-15 letters, digits, '_', '.', '-')"
    )
    links = sh("ip", "-o", "link", "show", netns=host.netns).stdout
    assert "lark" not in links and "master" not in links


def test_a_static_address_already_in_use_is_refused(sandbox, host):
    sandbox.kept_links.add("lark")
    r = sandbox.run_agent(host, *sandbox.who(), *static_flags(host.address), "--", "true")
    line = one_line_error(r)  # the execute host itself holds it
    assert line == (
        f"lark-agent: error: static address {host.address} is already in use by this node itself"
    )


def test_no_dhcp_server_is_a_clear_error_within_the_timeout(sandbox, host):
    sandbox.kept_links.add("lark")
    r = sandbox.run_agent(host, *sandbox.who(), *bridge_flags("--dhcp-timeout", "2"), "--", "true")
    name = sandbox.job_name()
    assert one_line_error(r) == (
        f"lark-agent: error: no DHCP lease for i_{name} on bridge lark: "
        "no lease after 2 s: no server answered"
    )


SERVE = """
import http.server, socketserver, sys, time
size, linger = int(sys.argv[1]), float(sys.argv[2])
served = []

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        served.append(1)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(b"x" * size)

    def log_message(self, *args):
        pass

class Server(http.server.HTTPServer):
    def server_bind(self):  # HTTPServer's would look up its own name (DNS) before listening
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "job", 8000

server = Server(("0.0.0.0", 8000), Handler)
server.timeout = 60
while not served:  # probes that only connect do not count
    server.handle_request()
time.sleep(linger)
"""

FETCH_AFTER = (
    "import sys, time, urllib.request\n"
    "n = len(urllib.request.urlopen(sys.argv[1], timeout=20).read())\n"
    "time.sleep(float(sys.argv[2]))\n"
    "print(n)\n"
)


def wait_for_value(path, key: str, timeout: float = 20.0):
    """``key`` of the update ad at ``path`` once it is there. The ad is written atomically:
    a read that fails (an ad that is not text, a path that is not a file) is a bug, raised
    at once, not waited out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            value = read_update_ad(path).get(key)
            if value is not None:
                return value
        time.sleep(0.05)
    raise AssertionError(f"no {key} in {path} within {timeout} s")


def test_two_hosts_bridged_jobs_one_serves_the_other_fetches(sandbox):
    """The proof of bridge mode: a job addressable on the site LAN, reached by another job on
    another node, both with DHCP leases renewed while they run and released at the end."""
    kea_log, _ = start_kea(sandbox, lifetime=4)
    sandbox.kept_links.add("lark")
    a, b = sandbox.add_host(), sandbox.add_host()
    size = 3_000_000
    flags = (*bridge_flags(), "--accounting-interval", "0.2")
    ad_a, ad_b = sandbox.tmp / "a.ad", sandbox.tmp / "b.ad"
    server = sandbox.start_agent(
        a,
        *sandbox.who(f"{sandbox.prefix}s"),
        "--update-ad",
        str(ad_a),
        *flags,
        "--",
        *python_job(SERVE, str(size), "3"),
    )
    try:
        address = wait_for_value(ad_a, "LarkInnerAddressIPv4")
        sandbox.wait_for_port(b.netns, address, 8000)  # from host B itself, not counted
    except BaseException as exc:
        job_ns = f"lark-{sandbox.prefix}s"
        seen = "\n".join(
            f"$ {' '.join(cmd)} [{ns}]\n" + sh(*cmd, netns=ns, check=False).stdout
            for ns, cmd in (
                (a.netns, ("nft", "list", "table", "bridge", "lark")),
                (a.netns, ("bridge", "fdb", "show", "br", "lark")),
                (a.netns, ("ip", "-d", "link", "show")),
                (job_ns, ("ip", "addr")),
                (job_ns, ("ip", "neigh")),
                (job_ns, ("ss", "-ltn")),
                (b.netns, ("ip", "neigh")),
                (sandbox.site, ("bridge", "fdb", "show", "br", "br0")),
            )
        )
        server.terminate()  # the agent stops its job and cleans up
        _, err = server.communicate(timeout=30)
        log = sandbox.log_file.read_text()
        raise AssertionError(f"{exc}\nagent: {err}\nlog: {log}\n{seen}") from exc
    fetched = sandbox.run_agent(
        b,
        *sandbox.who(f"{sandbox.prefix}c"),
        "--update-ad",
        str(ad_b),
        *flags,
        "--",
        *python_job(FETCH_AFTER, f"http://{address}:8000/", "3"),
    )
    _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(size)
    served, got = read_update_ad(ad_a), read_update_ad(ad_b)
    assert POOL[0] <= ipaddress.IPv4Address(got["LarkInnerAddressIPv4"]) <= POOL[1]
    assert got["LarkInnerAddressIPv4"] != address
    for ad in (served, got):
        assert ad["LarkNetworkType"] == "bridge" and ad["LarkAddressType"] == "dhcp"
        assert ad["LarkDHCPServer"] == SITE_ADDR and ad["LarkDHCPLeaseLifetime"] == 4
        assert ad["LarkDHCPRenewals"] >= 1 and ad["LarkDHCPState"] == "bound"
    # TCP/IP headers, and a retransmission or two on a loaded machine
    assert size <= served["NetworkOutgoing"] <= size * 1.12
    assert size <= got["NetworkIncoming"] <= size * 1.12
    released = [line for line in kea_log.read_text().splitlines() if "DHCP4_RELEASE" in line]
    for ad in (served, got):
        assert any(f"address {ad['LarkInnerAddressIPv4']} " in line for line in released), released


def test_a_lost_lease_takes_the_address_away_and_a_new_one_is_found(sandbox, host):
    _, kea = start_kea(sandbox, lifetime=3)
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    ad_path = sandbox.tmp / "lost.ad"
    agent = sandbox.start_agent(
        host,
        *sandbox.who(),
        "--update-ad",
        str(ad_path),
        *bridge_flags("--accounting-interval", "0.1", "--dhcp-timeout", "20"),
        "--",
        "sleep",
        "60",
    )
    try:
        first = wait_for_value(ad_path, "LarkInnerAddressIPv4")
        kea.terminate()
        kea.wait(10)
        deadline = time.monotonic() + 10
        while read_update_ad(ad_path).get("LarkDHCPState") != "lost (expired)":
            assert time.monotonic() < deadline, read_update_ad(ad_path)
            time.sleep(0.05)
        addrs = sh("ip", "-o", "-4", "addr", "show", netns=f"lark-{name}").stdout
        assert first not in addrs
        start_kea(sandbox, lifetime=3, tag="kea-back")
        deadline = time.monotonic() + 15
        while read_update_ad(ad_path).get("LarkDHCPState") != "bound":
            assert time.monotonic() < deadline, read_update_ad(ad_path)
            time.sleep(0.05)
        again = read_update_ad(ad_path)["LarkInnerAddressIPv4"]
        assert again in sh("ip", "-o", "-4", "addr", "show", netns=f"lark-{name}").stdout
    finally:
        agent.terminate()
        agent.communicate(timeout=30)
    assert agent.returncode == 128 + 15


def test_an_stp_bridge_is_waited_for_within_the_bound(sandbox, host):
    """An admin's own bridge with STP: its new port listens and learns (2 x forward delay)
    before it forwards; the job starts only then, and a bound too short is a clear error."""
    sandbox.kept_links.add("stpbr")
    sh(
        "ip",
        "link",
        "add",
        "stpbr",
        "type",
        "bridge",
        "stp_state",
        "1",
        "forward_delay",
        "200",
        netns=host.netns,
    )
    sh("ip", "link", "set", "stpbr", "up", netns=host.netns)
    flags = ("--network-type", "bridge", "--bridge-name", "stpbr", *static_flags()[4:])
    r = sandbox.run_agent(host, *sandbox.who(), *flags, "--bridge-wait", "0.5", "--", "true")
    assert one_line_error(r) == (
        f"lark-agent: error: bridge stpbr did not start forwarding on e_{sandbox.job_name()} "
        "within 0.5 s (STP with a long forward delay?)"
    )
    started = time.monotonic()
    r = sandbox.run_agent(host, *sandbox.who(), *flags, "--", "true")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started >= 3.5  # listening 2 s, learning 2 s


def test_agents_starting_at_once_make_one_bridge(sandbox, host):
    sandbox.kept_links.add("lark")
    agents = [
        sandbox.start_agent(
            host,
            *sandbox.who(f"{sandbox.prefix}c{i}"),
            *static_flags(f"{SITE_NET}.{70 + i}"),
            "--",
            "true",
        )
        for i in range(4)
    ]
    results = [(a.wait(60), a.stderr.read()) for a in agents]
    for a in agents:
        a.stdout.close()
        a.stderr.close()
    assert [rc for rc, _ in results] == [0] * 4, results
    bridges = sh("ip", "-o", "link", "show", "type", "bridge", netns=host.netns).stdout
    assert len(bridges.splitlines()) == 1 and ": lark:" in bridges


def test_a_flushed_bridge_table_is_restored_with_the_jobs_address(sandbox, host):

    def anti_spoofing_knows_the_job_again() -> None:
        table = sh("nft", "list", "table", "bridge", "lark", netns=host.netns).stdout
        assert f"elements = {{ {STATIC} }}" in table

    sandbox.kept_links.add("lark")
    flush = ("nft", "flush", "ruleset")
    before, final = fetch_around_a_flush(
        sandbox, host, static_flags(), flush, anti_spoofing_knows_the_job_again
    )
    assert before >= FILE_SIZES["1m"] and 2 * FILE_SIZES["1m"] <= final <= 2.12 * FILE_SIZES["1m"]


def test_the_sweeper_releases_a_dead_bridged_jobs_lease(sandbox, host):

    kea_log, _ = start_kea(sandbox, lifetime=3600)
    sandbox.kept_links.add("lark")
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host, *sandbox.who(name), *bridge_flags(), "--", "true",
        env={"_LARK_TEST_PAUSE_AFTER": "address"},
    )  # fmt: skip
    for _ in range(500):
        if sandbox.log_file.exists() and "test pause after address" in sandbox.log_file.read_text():
            break
        time.sleep(0.02)
    agent.kill()  # SIGKILL: no RELEASE from the agent
    agent.communicate(timeout=10)
    leased = re.search(r"DHCP lease (\S+)/24", sandbox.log_file.read_text()).group(1)
    assert "DHCP4_RELEASE" not in kea_log.read_text()
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    released = [ln for ln in kea_log.read_text().splitlines() if "DHCP4_RELEASE" in ln]
    assert any(f"address {leased} " in ln for ln in released), kea_log.read_text()[-2000:]
