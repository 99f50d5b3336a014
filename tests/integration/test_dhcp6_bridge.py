"""A bridged job's DHCPv6 lease from the site's Kea, kept by the agent from the job's port's
side: started by the router's managed flag (or ``--dhcp6 on``), on the job's interface with
the lease's lifetimes, renewed, released when the job ends or by the sweeper after a
crash; and a job on an IPv6-only node, with no IPv4 at all."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time

from helpers.agent import cleanup, python_job, read_update_ad
from helpers.bridge import bridge_flags, static_flags
from helpers.dhcp6 import lease_lines
from helpers.radvd import start_radvd
from sandbox import KEA6_DNS, KEA6_POOL, SITE_ADDR6, sh, start_kea6, wait_for

POOL = (ipaddress.IPv6Address(KEA6_POOL[0]), ipaddress.IPv6Address(KEA6_POOL[1]))

# the job's addresses in its pool once it has one (at most 20 s), then as told
LEASED = f"""\
import ipaddress, subprocess, sys, time
lo, hi = (ipaddress.IPv6Address(a) for a in {[str(a) for a in POOL]!r})
end = time.time() + 20
while True:
    out = subprocess.run(['ip', '-6', '-o', 'addr', 'show', 'scope', 'global'],
                         capture_output=True, text=True).stdout
    mine = [w.split('/')[0] for w in out.split() if '/' in w]
    leased = [a for a in mine if lo <= ipaddress.IPv6Address(a) <= hi]
    if leased:
        break
    if time.time() > end:
        sys.exit('no DHCPv6 address: ' + out)
    time.sleep(0.05)
print(leased[0], flush=True)
"""
# and the site reaches the job there: a datagram from it, answered
PING = LEASED + (
    "import socket\n"
    "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind((leased[0], 0))\n"
    "s.settimeout(5); s.sendto(b'hi', (sys.argv[1], 9)); print('sent', flush=True)\n"
)


SOLICIT = """\
import socket, sys
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(('::', 546))
def option(code, value):
    return code.to_bytes(2, 'big') + len(value).to_bytes(2, 'big') + value
duid = bytes.fromhex('0004') + bytes(16)  # a DUID-UUID of zeros
# SOLICIT with rapid commit and an IA_NA: a server that hears it leases an address at once
msg = bytes([1, 1, 2, 3]) + option(1, duid) + option(8, bytes(2)) + option(14, b'')
msg += option(3, bytes([0, 0, 0, 9]) + bytes(8))
u.sendto(msg, ('ff02::1:2', 547, 0, socket.if_nametoindex(sys.argv[1])))
"""


def released(run_dir, address: str) -> bool:
    rows = [r for r in lease_lines(run_dir) if r[0] == address]
    return bool(rows) and rows[-1][2] == "0"


def test_the_routers_managed_flag_starts_dhcpv6_and_the_lease_is_released(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    run_dir, _ = start_kea6(sandbox, timers=(2, 3, 5, 6))
    start_radvd(sandbox, managed=True)
    ad = sandbox.tmp / "update.ad"
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--update-ad", str(ad), "--",
        *python_job(LEASED + "time.sleep(4)\n"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    leased = r.stdout.strip()
    assert POOL[0] <= ipaddress.IPv6Address(leased) <= POOL[1]
    published = read_update_ad(ad)
    assert published["LarkInnerAddressIPv6"] == leased
    assert published["LarkDHCPv6DNSServers"] == ",".join(KEA6_DNS)
    assert published["LarkDHCPv6Renewals"] >= 1  # (T1 2 s, the job ran 4 s)
    assert published["LarkDHCPv6DUID"].startswith("00:03:00:01:")  # DUID-LL of its MAC
    log = sandbox.log_file.read_text()
    assert "DHCPv6 client started" in log and "DHCPv6 lease released" in log
    assert released(run_dir, leased), lease_lines(run_dir)


def test_the_leased_address_serves_the_job_and_its_own_dhcpv6_is_dropped(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60))
    start_radvd(sandbox, managed=True)
    listen = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sandbox.site}", "python3", "-c", "import socket\n"
         "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(('::', 9))\n"
         "print('ready', flush=True); d, peer = s.recvfrom(100); print(peer[0], flush=True)"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    sandbox.procs.append(listen)
    assert sandbox.read_line(listen.stdout).strip() == "ready"
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host, *sandbox.who(name), *static_flags(), "--",
        *python_job(PING + "time.sleep(30)\n"), SITE_ADDR6,
    )  # fmt: skip
    # (its next line, "sent", may already be in the pipe's buffer: the site's listener
    # is what proves the datagram went)
    leased = sandbox.read_line(agent.stdout).strip()
    out, _ = listen.communicate(timeout=10)
    assert out.split()[-1] == leased  # from the leased address, through the job's guard
    # root in the job's namespace asks the site's server for a lease of its own
    sh("python3", "-c", SOLICIT, f"i_{name}", netns=f"lark-{name}")
    agent.terminate()
    agent.communicate(timeout=20)
    # the job's own SOLICIT never reached the server: one lease, the agent's, released
    assert [r[0] for r in lease_lines(run_dir)] == [leased, leased]


def test_dhcp6_on_without_a_server_refuses_the_job_in_one_line(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    start_radvd(sandbox)
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--dhcp6", "on", "--dhcp-timeout", "2", "--",
        "true",
    )  # fmt: skip
    assert r.returncode == 125
    (line,) = r.stderr.strip().splitlines()
    assert "no DHCPv6 lease for i_" in line and "bridge lark" in line, r.stderr


def test_dhcp6_off_ignores_the_managed_flag(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    run_dir, _ = start_kea6(sandbox)
    start_radvd(sandbox, managed=True)
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--dhcp6", "off", "--",
        *python_job(LEASED.replace("20", "4")),
    )  # fmt: skip
    assert r.returncode != 0 and "no DHCPv6 address" in r.stderr
    assert lease_lines(run_dir) == [] and "DHCPv6 client" not in sandbox.log_file.read_text()


def test_a_dead_agents_lease_is_released_by_the_sweeper(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60))
    start_radvd(sandbox, managed=True)
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host, *sandbox.who(name), *static_flags(), "--",
        *python_job(LEASED + "time.sleep(60)\n"),
    )  # fmt: skip
    leased = sandbox.read_line(agent.stdout).strip()
    record = sandbox.state_dir / f"{name}.json"
    assert wait_for(lambda: '"dhcp6"' in record.read_text(), 5)
    # ``status`` shows the lease: its address and when it runs out
    argv = sandbox.agent_argv(host, "--state-dir", str(sandbox.state_dir), "--json", verb="status")
    [row] = json.loads(sh(*argv[2:], netns=host.netns).stdout)
    assert row["address6"] == leased and row["lease_expires_epoch"] is None
    assert 0 < row["lease6_expires_epoch"] - time.time() <= 60
    agent.kill()  # SIGKILL: no RELEASE from the agent (its job goes on until swept)
    agent.wait(10)
    assert not released(run_dir, leased)
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "DHCPv6 lease" in swept.stdout + swept.stderr + sandbox.log_file.read_text()
    assert wait_for(lambda: released(run_dir, leased), 5), lease_lines(run_dir)


def test_on_an_ipv6_only_node_a_bridged_job_has_ipv6_only(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv4=False, ipv6=True)
    start_radvd(sandbox)
    ad = sandbox.tmp / "update.ad"
    show = (
        "import subprocess\n"
        "print(subprocess.run(['ip', '-o', 'addr', 'show', 'scope', 'global'],"
        " capture_output=True, text=True).stdout, flush=True)\n"
    )
    r = sandbox.run_agent(
        host, *sandbox.who(), *bridge_flags(), "--update-ad", str(ad), "--",
        *python_job(show),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    assert " inet6 " in r.stdout and " inet " not in r.stdout
    published = read_update_ad(ad)
    assert "LarkInnerAddressIPv4" not in published and "LarkDHCPState" not in published
    assert ipaddress.IPv6Address(published["LarkInnerAddressIPv6"]).is_global is False  # ULA
    assert "no IPv4 (the node has none)" in sandbox.log_file.read_text()


def test_a_leased_address_in_use_on_the_lan_is_declined_and_taken_off(sandbox):
    """The site already uses the one address of the pool: the job's kernel finds it in its
    (optimistic) duplicate address detection, the agent's client DECLINEs it (RFC 8415
    section 18.2.8) and takes it off the job's interface."""
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    taken = KEA6_POOL[0]
    run_dir, _ = start_kea6(sandbox, timers=(30, 45, 50, 60), pool=(taken, taken))
    sh("ip", "addr", "add", f"{taken}/64", "dev", "br0", "nodad", netns=sandbox.site)
    start_radvd(sandbox, managed=True)
    # (the kernel's DAD probe leaves within a second of the address)
    watch = (
        "import subprocess, sys, time\n"
        "time.sleep(3)\n"
        "out = subprocess.run(['ip', '-6', '-o', 'addr'], capture_output=True, text=True)\n"
        "print(sys.argv[1] in out.stdout.replace('/', ' ').split())\n"
    )
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--", *python_job(watch), taken
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    assert r.stdout.split() == ["False"]  # (taken off the job's interface)
    log = sandbox.log_file.read_text()
    assert f"DHCPv6 lease {taken} from" in log and "lost (declined)" in log, log
    assert "DHCP6_DECLINE" in (run_dir / "kea.log").read_text()
