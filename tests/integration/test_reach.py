"""What a NAT job reaches: the world, not the node (any of its addresses, its gateway address
on the job's veth included, broadcast too) but for what the admin opens and DNS to the node
addresses serving the job's resolver, not another NAT job unless ``--job-to-job``; the node
still reaches the job. Neither end of a job's veth has IPv6; where the node turns it on, what
crosses is counted. With each firewall backend (iptables in both builds)."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from helpers.agent import python_job, read_update_ad
from helpers.bridge import static_flags
from helpers.dns import run, with_node_resolv_conf
from helpers.firewall import BACKENDS
from sandbox import HTTP_PORT, PING, SITE_ADDR, sh, wait_for

NODE_PORT, OTHER_PORT, JOB_PORT, UDP_PORT, CLOSED_UDP_PORT = 7000, 7002, 7001, 7003, 7004
TIMEOUT_S = 1.5  # a dropped connection's wait: a refused one ends at once

# ``python3 -c SERVER tcp:PORT udp:PORT ...`` in a namespace: TCP (both families) accepted and
# closed, UDP (IPv4, broadcast too) echoed; every socket bound before the first accept.
SERVER = """
import socket, sys, threading
bound = []
for spec in sys.argv[1:]:
    proto, port = spec.split(':')
    if proto == 'tcp':
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::' if proto == 'tcp' else '0.0.0.0', int(port)))
    if proto == 'tcp':
        s.listen(64)
    bound.append((proto, s))

def serve(proto, s):
    while True:
        if proto == 'tcp':
            s.accept()[0].close()
        else:
            data, peer = s.recvfrom(64)
            s.sendto(data, peer)

for one in bound:
    threading.Thread(target=serve, args=one).start()
"""

# The job: ``NAME=HOST:PORT/PROTO`` each, at once; prints ``NAME open`` (connected, or a UDP
# echo came back) or ``NAME closed``, in the order given. HOST ``GATEWAY`` is the job's own
# gateway (the node's end of its veth).
PROBE = f"""
import concurrent.futures, socket, struct, sys

def gateway():
    for line in open('/proc/net/route').read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == '00000000':
            return socket.inet_ntoa(struct.pack('<I', int(fields[2], 16)))

def probe(target):
    name, rest = target.split('=')
    where, proto = rest.rsplit('/', 1)
    host, port = where.rsplit(':', 1)
    host = gateway() if host == 'GATEWAY' else host.strip('[]')
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
    s.settimeout({TIMEOUT_S})
    try:
        if proto == 'udp':  # (the echo may come from another node address: not connected)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.sendto(b'hello', (host, int(port)))
            s.recvfrom(64)
        else:
            s.connect((host, int(port)))
        return name + ' open'
    except OSError:
        return name + ' closed'
    finally:
        s.close()

with concurrent.futures.ThreadPoolExecutor(8) as pool:
    for line in pool.map(probe, sys.argv[1:]):
        print(line, flush=True)
"""

# Another job: a TCP service on JOB_PORT; prints its own address, serves until its stdin ends.
SERVICE_JOB = f"""
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', {JOB_PORT}))
s.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(('{SITE_ADDR}', 9))
print(u.getsockname()[0], flush=True)

def serve():
    while True:
        s.accept()[0].close()

threading.Thread(target=serve, daemon=True).start()
sys.stdin.readline()
"""

# From the node's namespace: connect, send N zero bytes, close.
SEND = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(bytes(int(sys.argv[3])))
s.close()
"""


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> tuple[str, ...]:
    return BACKENDS[request.param]


def serve(sandbox, host, *specs: str) -> None:
    """Services of the node's own, on all its addresses (IPv4 TCP as IPv6 does)."""
    sandbox.start_in(host.netns, [sys.executable, "-I", "-c", SERVER, *specs])
    tcp = next(int(s.split(":")[1]) for s in specs if s.startswith("tcp:"))
    sandbox.wait_for_port(host.netns, "127.0.0.1", tcp)


def probe(sandbox, host, name: str, *flags: str, targets: list[str], env=None) -> list[str]:
    r = sandbox.run_agent(
        host, *sandbox.who(sandbox.job_name(name)), *flags, "--", *python_job(PROBE, *targets),
        env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def node_connects(host, address: str, port: int) -> bool:
    code = f"import socket; socket.create_connection(('{address}', {port}), {TIMEOUT_S})"
    return sh(sys.executable, "-I", "-c", code, netns=host.netns, check=False).returncode == 0


class RunningJob:
    """A job under its agent, with a pipe to its stdin; ``finish`` ends it (a line)."""

    def __init__(self, sandbox, host, name: str, *flags: str, job: tuple[str, ...]) -> None:
        self.sandbox = sandbox
        argv = sandbox.agent_argv(host, *sandbox.who(sandbox.job_name(name)), *flags, "--", *job)
        self.agent = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def line(self) -> str:
        return self.sandbox.read_line(self.agent.stdout).strip()

    def finish(self) -> str:
        if self.agent.poll() is None:
            with contextlib.suppress(BrokenPipeError):  # (it ended on its own meanwhile)
                self.agent.stdin.write("\n")
                self.agent.stdin.flush()
        out, err = self.agent.communicate(timeout=60)
        assert self.agent.returncode == 0, err
        return out

    def close(self) -> None:
        if self.agent.poll() is None:
            self.agent.terminate()
            self.agent.communicate(timeout=30)


@pytest.mark.parametrize("together", [False, True], ids=["apart", "job-to-job"])
def test_a_nat_job_reaches_the_world_not_the_node_nor_another_job_unless_allowed(
    sandbox, host, backend, together
):
    serve(sandbox, host, f"tcp:{NODE_PORT}", f"udp:{UDP_PORT}")
    flags = (*backend, *(["--job-to-job"] if together else []))
    other = RunningJob(sandbox, host, "b", *flags, job=python_job(SERVICE_JOB))
    try:
        inner = other.line()
        found = probe(sandbox, host, "a", *flags, targets=[
            f"world={SITE_ADDR}:{HTTP_PORT}/tcp",
            f"lan={host.address}:{NODE_PORT}/tcp",
            f"gateway=GATEWAY:{NODE_PORT}/tcp",
            f"broadcast=255.255.255.255:{UDP_PORT}/udp",
            f"job={inner}:{JOB_PORT}/tcp",
        ])  # fmt: skip
        assert found == [
            "world open",
            "lan closed",
            "gateway closed",
            "broadcast closed",
            f"job {'open' if together else 'closed'}",
        ]
        assert node_connects(host, inner, JOB_PORT)  # the node still reaches a job
        other.finish()
    finally:
        other.close()
    assert "of the node the job reaches nothing; other NAT jobs" in sandbox.log_file.read_text()


def test_a_node_port_the_admin_opens_is_open_and_no_other(sandbox, host, backend):
    serve(sandbox, host, f"tcp:{NODE_PORT}", f"tcp:{OTHER_PORT}", f"udp:{UDP_PORT}",
          f"udp:{CLOSED_UDP_PORT}")  # fmt: skip
    opened = ("--node-ports", f"tcp {NODE_PORT}, udp {UDP_PORT}")
    found = probe(sandbox, host, "a", *backend, *opened, targets=[
        f"lan={host.address}:{NODE_PORT}/tcp",
        f"gateway=GATEWAY:{NODE_PORT}/tcp",
        f"udp=GATEWAY:{UDP_PORT}/udp",
        f"other={host.address}:{OTHER_PORT}/tcp",
        f"other-udp={host.address}:{CLOSED_UDP_PORT}/udp",
    ])  # fmt: skip
    assert found == ["lan open", "gateway open", "udp open", "other closed", "other-udp closed"]
    assert f"the job reaches tcp {NODE_PORT}, udp {UDP_PORT};" in sandbox.log_file.read_text()


# For each line ``probe`` on stdin: whether the job reaches its gateway's NODE_PORT and
# OTHER_PORT; another line ends it.
PROBE_EACH_LINE = f"""
import socket, struct, sys

def reaches(port):
    for line in open('/proc/net/route').read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == '00000000':
            gateway = socket.inet_ntoa(struct.pack('<I', int(fields[2], 16)))
    try:
        socket.create_connection((gateway, port), {TIMEOUT_S}).close()
        return 'open'
    except OSError:
        return 'closed'

while sys.stdin.readline() == 'probe\\n':
    print(reaches({NODE_PORT}), reaches({OTHER_PORT}), flush=True)
"""


def test_a_flushed_firewall_comes_back_as_open_and_as_closed_as_it_was(sandbox, host, backend):
    """The job's rules put back after a flush (nft's whole ruleset, iptables' filter table)
    are made from what the agent keeps of them: the opened port is open, the rest closed."""
    serve(sandbox, host, f"tcp:{NODE_PORT}", f"tcp:{OTHER_PORT}")
    if backend[1] == "nftables":
        flush, listing = ("nft", "flush", "ruleset"), ("nft", "list", "table", "inet", "lark")
        closing = "fib daddr type != unicast drop"
    else:
        flush, listing = (backend[3], "-w", "-F"), (f"{backend[3]}-save", "-t", "filter")
        closing = "! --dst-type UNICAST -j DROP"  # (the agent logs before it restores)
    flags = (*backend, "--node-ports", f"tcp {NODE_PORT}", "--accounting-interval", "0.1")
    running = RunningJob(sandbox, host, "j1", *flags, job=python_job(PROBE_EACH_LINE))
    try:

        def round_() -> str:
            running.agent.stdin.write("probe\n")
            running.agent.stdin.flush()
            return running.line()

        assert round_() == "open closed"
        sh(*flush, netns=host.netns)
        assert wait_for(lambda: "restoring it" in sandbox.log_file.read_text(), 10)
        assert wait_for(lambda: closing in sh(*listing, netns=host.netns, check=False).stdout, 10)
        assert round_() == "open closed"
        running.finish()
    finally:
        running.close()


def test_dns_is_open_to_the_node_addresses_serving_the_jobs_resolver(sandbox, host, backend):
    """The node's resolv.conf names one of the node's own addresses: the job's firewall opens
    port 53 there (UDP and TCP), and port 53 of any other node address stays closed."""
    serve(sandbox, host, "tcp:53", "udp:53")
    argv = sandbox.agent_argv(
        host, *sandbox.who(sandbox.job_name("a")), *backend, "--",
        *python_job(PROBE, f"udp={host.address}:53/udp", f"tcp={host.address}:53/tcp",
                    "gateway-udp=GATEWAY:53/udp", "gateway-tcp=GATEWAY:53/tcp"),
    )  # fmt: skip
    r = run(with_node_resolv_conf(sandbox, f"nameserver {host.address}\n", argv))
    assert r.returncode == 0, r.stderr
    found = r.stdout.splitlines()
    assert found == ["udp open", "tcp open", "gateway-udp closed", "gateway-tcp closed"]


def test_dns_stays_closed_when_the_jobs_resolver_is_elsewhere(sandbox, host, backend):
    serve(sandbox, host, "tcp:53", "udp:53")
    argv = sandbox.agent_argv(
        host, *sandbox.who(sandbox.job_name("a")), *backend, "--",
        *python_job(PROBE, f"udp={host.address}:53/udp", f"tcp={host.address}:53/tcp"),
    )  # fmt: skip
    r = run(with_node_resolv_conf(sandbox, f"nameserver {SITE_ADDR}\n", argv))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["udp closed", "tcp closed"]


# The job (as root, for ICMPv6), on one line: its veth end's disable_ipv6, the links with an
# IPv6 address, whether all nodes on its link answer an echo, whether it reaches the node's
# service.
NO_IPV6 = f"""
import socket, subprocess, sys
ifname, ping, node = sys.argv[1:4]
seen = [open(f'/proc/sys/net/ipv6/conf/{{ifname}}/disable_ipv6').read().strip()]
seen.append(','.join(sorted({{ln.split()[5] for ln in open('/proc/net/if_inet6') if ln.strip()}})))
echo = subprocess.run([sys.executable, '-I', '-c', ping, 'ff02::1%' + ifname, '56'],
                      capture_output=True)
seen.append('answered' if echo.returncode == 0 else 'nothing')
s = socket.socket()
s.settimeout({TIMEOUT_S})
try:
    s.connect((node, {NODE_PORT}))
    seen.append('node-open')
except OSError:
    seen.append('node-closed')
print(' '.join(seen), flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("mode", ["nat", "bridge"])
def test_neither_end_of_a_jobs_veth_has_ipv6(sandbox, host, mode):
    """A bridged job is a LAN host like any other: it reaches the node's service by the
    bridge (the NAT job's rules are not in its way)."""
    flags: tuple[str, ...] = ()
    if mode == "bridge":
        sandbox.kept_links.add("lark")
        flags = static_flags()
    serve(sandbox, host, f"tcp:{NODE_PORT}")
    name = sandbox.job_name()
    job = python_job(NO_IPV6, f"i_{name}", PING, host.address)
    running = RunningJob(sandbox, host, "j1", "--user", "root", "--allow-root", *flags, job=job)
    try:
        seen = running.line().split()
        assert seen == ["1", "lo", "nothing", f"node-{'open' if mode == 'bridge' else 'closed'}"]
        node_end = f"/proc/sys/net/ipv6/conf/e_{name}/disable_ipv6"
        assert sh("cat", node_end, netns=host.netns).stdout.strip() == "1"
        assert sh("ip", "-6", "addr", "show", "dev", f"e_{name}", netns=host.netns).stdout == ""
        running.finish()
    finally:
        running.close()


# Listens on both families; once told (a line), tries the node's IPv6 address, then takes one
# connection and prints its peer and the bytes it got.
IPV6_JOB = f"""
import socket, sys
srv = socket.socket(socket.AF_INET6)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(('::', {JOB_PORT}))
srv.listen(1)
print('ready', flush=True)
sys.stdin.readline()
s = socket.socket(socket.AF_INET6)
s.settimeout({TIMEOUT_S})
try:
    s.connect(('fd77::1', {NODE_PORT}))
    print('node open', flush=True)
except OSError:
    print('node closed', flush=True)
srv.settimeout(30)
conn, peer = srv.accept()
got = 0
while data := conn.recv(65536):
    got += len(data)
print(peer[0], got, flush=True)
"""
IPV6_BYTES = 10_000_000


def test_ipv6_a_node_turns_on_is_counted_and_the_node_stays_closed(sandbox, host):
    """As root, the test turns IPv6 on at both ends (a node where it is on) and gives them
    addresses: a 10 MB push from the node over IPv6 is counted in NetworkIncoming, the node
    reaches the job (neighbour discovery included) and the job still not the node."""
    serve(sandbox, host, f"tcp:{NODE_PORT}")
    name = sandbox.job_name()
    update = sandbox.tmp / "update.ad"
    running = RunningJob(sandbox, host, "j1", "--update-ad", str(update), "--accounting-interval",
                         "0.2", job=python_job(IPV6_JOB))  # fmt: skip
    try:
        assert running.line() == "ready"
        for netns, ifname, address in ((host.netns, f"e_{name}", "fd77::1/64"),
                                       (f"lark-{name}", f"i_{name}", "fd77::2/64")):  # fmt: skip
            knob = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
            sh("sh", "-c", f"echo 0 > {knob}", netns=netns)
            sh("ip", "-6", "addr", "add", address, "dev", ifname, "nodad", netns=netns)
        running.agent.stdin.write("go\n")
        running.agent.stdin.flush()
        assert running.line() == "node closed"
        sh(sys.executable, "-I", "-c", SEND, "fd77::2", str(JOB_PORT), str(IPV6_BYTES),
           netns=host.netns)  # fmt: skip
        assert running.finish().split() == ["fd77::1", str(IPV6_BYTES)]
    finally:
        running.close()
    counted = read_update_ad(update)
    assert IPV6_BYTES <= counted["NetworkIncoming"] <= IPV6_BYTES * 1.06
    assert 0 < counted["NetworkOutgoing"] < IPV6_BYTES * 0.05  # (its acknowledgements: IPv6)
