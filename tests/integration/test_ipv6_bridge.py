"""IPv6 for bridged jobs: SLAAC from the site's router advertisements (radvd), counted, and
guarded at the job's port (RA guard, DHCPv6 shield, source and neighbour-advertisement
anti-spoofing)."""

from __future__ import annotations

import ipaddress
import subprocess

from helpers.agent import python_job, read_update_ad
from helpers.bridge import static_flags
from helpers.radvd import start_radvd
from sandbox import FILE_SIZES, SITE_ADDR6, SITE_NET6, sh

LAN6 = ipaddress.IPv6Network(f"{SITE_NET6}::/64")

# a job that waits for its SLAAC address (a route to the site appears with the RA), prints
# it, then fetches or serves as told
OWN_ADDRESS = f"""\
import socket, sys, time, urllib.request
end = time.time() + 20
while True:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.connect(('{SITE_ADDR6}', 9))
        mine = s.getsockname()[0]
        if not mine.startswith('fe80'):
            break
    except OSError:
        pass
    if time.time() > end:
        sys.exit('no SLAAC address')
    time.sleep(0.05)
print(mine, flush=True)
"""
FETCH6 = OWN_ADDRESS + (
    "print(len(urllib.request.urlopen(sys.argv[1], timeout=10).read()), flush=True)\n"
)
SERVE6 = OWN_ADDRESS + (
    "srv = socket.create_server(('::', 8082), family=socket.AF_INET6)\n"
    "conn, peer = srv.accept(); print(peer[0], flush=True)\n"
)
DIAL6 = OWN_ADDRESS + "socket.create_connection((sys.argv[1], 8082), 5).close()\n"


def test_a_bridged_job_gets_slaac_from_the_sites_router_and_is_counted(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    start_radvd(sandbox)
    ad = sandbox.tmp / "update.ad"
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--update-ad", str(ad), "--",
        *python_job(FETCH6), sandbox.url6("1m"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + sandbox.log_file.read_text()
    mine, size = r.stdout.split()
    assert ipaddress.IPv6Address(mine) in LAN6 and size == str(FILE_SIZES["1m"])
    published = read_update_ad(ad)
    assert published["LarkInnerAddressIPv6"] == mine
    assert FILE_SIZES["1m"] <= published["NetworkIncomingIPv6"] <= published["NetworkIncoming"]
    assert "IPv6 on the LAN: SLAAC" in sandbox.log_file.read_text()


def test_bridged_jobs_on_two_hosts_reach_each_other_over_ipv6(sandbox):
    sandbox.kept_links.add("lark")
    one, two = sandbox.add_host(ipv6=True), sandbox.add_host(ipv6=True)
    start_radvd(sandbox)
    server = sandbox.start_agent(
        one, *sandbox.who(sandbox.job_name("s")), *static_flags(), "--", *python_job(SERVE6)
    )
    address = sandbox.read_line(server.stdout).strip()
    dial = sandbox.run_agent(
        two, *sandbox.who(sandbox.job_name("c")), *static_flags("10.77.0.61"), "--",
        *python_job(DIAL6), address,
    )  # fmt: skip
    assert dial.returncode == 0, dial.stderr
    out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert out.strip() == dial.stdout.strip()  # the client's own SLAAC address, end to end


ROGUE = """\
import socket, struct, sys
# as root in the job's namespace: a router advertisement, a DHCPv6 advertise, a neighbour
# advertisement for the site's address, and one from a forged source (not the job's)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
ifindex = socket.if_nametoindex(sys.argv[1])
ra = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 1800, 0, 0)
s.sendto(ra, ('ff02::1', 0, 0, ifindex))
na = struct.pack('!BBHI', 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, sys.argv[2])
s.sendto(na, ('ff02::1', 0, 0, ifindex))
# a DHCPv6 server's message (from 547, to a relay's port) and one to clients (to 546)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.bind(('::', 547))
u.sendto(b'\\x02' + b'\\0' * 3, ('ff02::1', 547, 0, ifindex))
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.sendto(b'\\x07' + b'\\0' * 3, ('ff02::1', 546, 0, ifindex))
f = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
f.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
f.bind((sys.argv[3], 0))
f.sendto(b'forged', (sys.argv[2], 9999))
print('sent', flush=True)
"""

LISTEN = """\
import select, socket, sys
icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
dhcp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
dhcp.bind(('::', 546))
server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
server.bind(('::', 547))
target = socket.inet_pton(socket.AF_INET6, sys.argv[3])
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.bind(('::', 9999))
print('ready', flush=True)
end = __import__('time').time() + float(sys.argv[1])
while (left := end - __import__('time').time()) > 0:
    for sock in select.select([icmp, dhcp, server, udp], [], [], left)[0]:
        data, peer = sock.recvfrom(2000)
        if sock is icmp and data[0] == 134 and peer[0] != sys.argv[2]:  # (not the site's)
            print('router advertisement', flush=True)
        elif sock is icmp and data[0] == 136 and data[8:24] == target:
            print('neighbour advertisement for the site', flush=True)
        elif sock in (dhcp, server):
            print('dhcpv6', sock.getsockname()[1], flush=True)
        elif sock is udp:
            print('udp', data.decode(errors='replace'), peer[0], flush=True)
"""


def test_a_jobs_router_dhcp_server_and_spoofed_messages_never_reach_the_lan(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    start_radvd(sandbox)
    name = sandbox.job_name()
    agent = sandbox.start_agent(host, *sandbox.who(name), *static_flags(), "--",
                                *python_job(OWN_ADDRESS + "time.sleep(30)\n"))  # fmt: skip
    mine = sandbox.read_line(agent.stdout).strip()
    site_ll = sh(
        "ip", "-6", "-o", "addr", "show", "dev", "br0", "scope", "link", netns=sandbox.site
    )
    own = site_ll.stdout.split()[3].split("/")[0]  # (the site's own RAs are not the job's)
    listen = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sandbox.site}", "python3", "-c", LISTEN, "4", own,
         SITE_ADDR6],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    sandbox.procs.append(listen)
    assert sandbox.read_line(listen.stdout).strip() == "ready"
    forged = str(ipaddress.IPv6Address(mine) + 1)
    rogue = sh("python3", "-c", ROGUE, f"i_{name}", SITE_ADDR6, forged, netns=f"lark-{name}")
    assert rogue.stdout.strip() == "sent"
    # and what the job may send still goes: a datagram from its own address
    sh("python3", "-c", "import socket, sys; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)"
       ".sendto(b'own', (sys.argv[1], 9999))", SITE_ADDR6, netns=f"lark-{name}")  # fmt: skip
    heard, _ = listen.communicate(timeout=20)
    agent.terminate()
    agent.communicate(timeout=20)
    assert heard.splitlines() == [f"udp own {mine}"], heard


def test_with_ipv6_off_a_bridged_job_has_none(sandbox):
    sandbox.kept_links.add("lark")
    host = sandbox.add_host(ipv6=True)
    start_radvd(sandbox)
    r = sandbox.run_agent(
        host, *sandbox.who(), *static_flags(), "--ipv6", "off", "--",
        *python_job(OWN_ADDRESS.replace("20", "3")),
    )  # fmt: skip
    assert r.returncode != 0 and "no SLAAC address" in r.stderr
