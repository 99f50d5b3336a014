"""Per-connection policy through NFQUEUE: real queue, real servers in the site namespace."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers.agent import cleanup, python_job, read_update_ad
from sandbox import SITE_ADDR, sh, start_kea, wait_for

UDP_PORT = 5353
PROBE = r"""
import errno, json, socket, sys, time
out = []
for spec in sys.argv[1:]:
    proto, addr, port = spec.split(":")
    start = time.monotonic()
    try:
        if proto == "tcp":
            socket.create_connection((addr, int(port)), timeout=4).close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(4)
            s.connect((addr, int(port)))
            s.send(b"ping")
            s.recv(100)
            s.close()
        result = "ok"
    except OSError as e:
        result = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else "timeout"
    out.append([spec, result, round(time.monotonic() - start, 3)])
print(json.dumps(out), flush=True)
"""
UDP_ECHO = (
    "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"s.bind(('{SITE_ADDR}', {UDP_PORT}))\n"
    "while True:\n    d, a = s.recvfrom(100)\n    s.sendto(d, a)\n"
)
POLICY = f"allow tcp {SITE_ADDR}:8080, allow udp {SITE_ADDR}:{UDP_PORT}, deny any 0.0.0.0/0"


def probe(sandbox, host, *flags: str, targets: list[str], job_ad: str | None = None):
    ad = sandbox.tmp / "update.ad"
    extra = []
    if job_ad is not None:
        path = sandbox.tmp / "job.ad"
        path.write_text(job_ad)
        extra = ["--job-ad", str(path)]
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--audit-dir",
        str(sandbox.tmp / "audit"),
        "--update-ad",
        str(ad),
        *extra,
        *flags,
        "--",
        *python_job(PROBE, *targets),
    )
    return r, ad


def audit_lines(sandbox) -> list[dict]:
    path = sandbox.tmp / "audit" / f"{sandbox.job_name()}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


BACKENDS = {
    # host side nftables (the default); the kernel here has no nft queue: the NFQUEUE target
    # of iptables and ip6tables
    "nftables": ((), ("nft queue", "iptables and ip6tables NFQUEUE")),
    "iptables-legacy": (
        ("--firewall-backend", "iptables", "--iptables", "iptables-legacy"),
        ("iptables-legacy and ip6tables-legacy NFQUEUE",),
    ),
    "iptables-nft": (
        ("--firewall-backend", "iptables", "--iptables", "iptables-nft"),
        ("nft queue", "iptables-nft and ip6tables-nft NFQUEUE"),
    ),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_allowed_and_denied_tcp_and_udp_are_decided_audited_and_counted(sandbox, host, backend):
    flags, ways = BACKENDS[backend]
    sandbox.start_in(sandbox.site, [sys.executable, "-c", UDP_ECHO])
    targets = [
        f"tcp:{SITE_ADDR}:8080",
        f"tcp:{SITE_ADDR}:8081",
        f"udp:{SITE_ADDR}:{UDP_PORT}",
        f"udp:{SITE_ADDR}:{UDP_PORT + 1}",
    ]
    r, ad = probe(sandbox, host, "--connection-policy", POLICY, *flags, targets=targets)
    assert r.returncode == 0, r.stderr
    log = sandbox.log_file.read_text()
    assert any(f"connection policy on ({way})" in log for way in ways), log
    results = {spec: (result, took) for spec, result, took in json.loads(r.stdout)}
    assert results[targets[0]][0] == "ok"
    assert results[targets[2]][0] == "ok"
    # denied: at once, by a reset / an ICMP error, not by a timeout
    assert results[targets[1]][0] == "ECONNREFUSED" and results[targets[1]][1] < 1
    assert results[targets[3]][0] in ("EHOSTUNREACH", "ECONNREFUSED", "EACCES")
    assert results[targets[3]][1] < 1
    lines = audit_lines(sandbox)
    assert [(x["protocol"], x["port"], x["verdict"]) for x in lines] == [
        ("tcp", 8080, "allow"),
        ("tcp", 8081, "deny"),
        ("udp", UDP_PORT, "allow"),
        ("udp", UDP_PORT + 1, "deny"),
    ]
    assert {x["job"] for x in lines} == {sandbox.job_name()}
    assert {x["destination"] for x in lines} == {SITE_ADDR}
    assert lines[0]["rule"] == f"allow tcp {SITE_ADDR}:8080"
    assert lines[1]["rule"] == "deny any 0.0.0.0/0"
    assert all(x["source"].startswith("192.168.181.") and x["time"] for x in lines)
    values = read_update_ad(ad)
    assert values["NetworkConnectionsAllowed"] == 2
    assert values["NetworkConnectionsDenied"] == 2
    assert values["NetworkLastDeniedDestination"] == f"{SITE_ADDR}:{UDP_PORT + 1}/udp"


def test_a_job_may_narrow_the_policy_but_never_widen_it(sandbox, host):
    admin = ("--connection-policy", "allow tcp 10.77.0.0/24, deny any 0.0.0.0/0")
    narrow = f'LarkAllowedConnections = "tcp {SITE_ADDR}:8080"\n'
    targets = [f"tcp:{SITE_ADDR}:8080", f"tcp:{SITE_ADDR}:8081"]
    r, _ = probe(sandbox, host, *admin, targets=targets, job_ad=narrow)
    assert r.returncode == 0, r.stderr
    assert [result for _, result, _ in json.loads(r.stdout)] == ["ok", "ECONNREFUSED"]
    assert audit_lines(sandbox)[1]["rule"] == "job: not in LarkAllowedConnections"
    wide = 'LarkAllowedConnections = "tcp 0.0.0.0/0:443"\n'
    r, _ = probe(sandbox, host, *admin, targets=targets, job_ad=wide)
    assert r.returncode == 125
    assert r.stderr.strip() == (
        "lark-agent: error: job ad LarkAllowedConnections entry 1 'tcp 0.0.0.0/0:443' asks "
        "for more than this node's connection policy allows"
    )
    r, _ = probe(sandbox, host, *admin, targets=targets, job_ad="LarkAllowedConnections = 5\n")
    assert r.returncode == 125 and "must be a string of entries" in r.stderr


def test_a_malformed_policy_is_one_line_naming_the_entry(sandbox, host):
    bad = f"allow tcp {SITE_ADDR}:8080, alow udp 10.0.0.0/8"
    r, _ = probe(sandbox, host, "--connection-policy", bad, targets=[])
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f'lark-agent: error: LARK_CONNECTION_POLICY "{bad}" (command line --connection-policy) '
        "entry 2 'alow udp 10.0.0.0/8': unknown verdict 'alow' (allow or deny)"
    )


def test_no_policy_no_queue_and_the_queue_rules_when_there_is_one(sandbox, host):
    for flags, queued in (((), False), (("--connection-policy", POLICY), True)):
        name = sandbox.job_name("q" if queued else "n")
        agent = sandbox.start_agent(
            host, *sandbox.who(name), *flags, "--", "/bin/sh", "-c", "echo ready; exec sleep 30"
        )
        try:
            assert sandbox.read_line(agent.stdout).strip() == "ready"
            nft = sh("nft", "list", "ruleset", netns=f"lark-{name}").stdout
            for family in ("iptables-save", "ip6tables-save"):  # both families, or neither
                rules = sh(family, netns=f"lark-{name}").stdout + nft
                assert ("NFQUEUE" in rules or "queue" in rules) == queued, rules
            knob = "/proc/sys/net/ipv6/conf/lo/disable_ipv6"  # (the job keeps its ::1)
            kept = sh("cat", knob, netns=f"lark-{name}").stdout.strip()
            assert kept == "0", "IPv6 switched off in the job's namespace"
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.communicate(timeout=20)


FAIL_CLOSED_JOB = r"""
import socket, sys, time
socket.create_connection((sys.argv[1], 8080), timeout=4).close()
print("first ok", flush=True)
sys.stdin.readline()  # the test kills the agent, then says go
try:
    socket.create_connection((sys.argv[1], 8080), timeout=2).close()
    print("second ok", flush=True)
except OSError as e:
    print("second failed", e, flush=True)
"""


def test_new_connections_fail_when_the_agent_is_gone(sandbox, host):
    name = sandbox.job_name()
    argv = sandbox.agent_argv(
        host, *sandbox.who(name), "--connection-policy", POLICY,
        "--", *python_job(FAIL_CLOSED_JOB, SITE_ADDR),
    )  # fmt: skip
    agent = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert sandbox.read_line(agent.stdout).strip() == "first ok"
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        agent.stdin.write("go\n")
        agent.stdin.flush()
        assert sandbox.read_line(agent.stdout, timeout=15).startswith("second failed")
    finally:
        agent.kill()
        agent.communicate(timeout=10)
        swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr


def test_a_bridged_dhcp_job_is_guarded_and_its_lease_still_renews(sandbox, host):
    # the agent's own DHCP renewals leave from the job's namespace: they must not be queued
    start_kea(sandbox, lifetime=2)
    sandbox.kept_links.add("lark")
    targets = [f"tcp:{SITE_ADDR}:8080", f"tcp:{SITE_ADDR}:8081"]
    job = PROBE + "\ntime.sleep(3)\n"
    ad = sandbox.tmp / "bridged.ad"
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--network-type", "bridge", "--bridge-device", "uplink",
        "--connection-policy", POLICY,
        "--audit-dir", str(sandbox.tmp / "audit"),
        "--update-ad", str(ad),
        "--", *python_job(job, *targets),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [result for _, result, _ in json.loads(r.stdout)] == ["ok", "ECONNREFUSED"]
    values = read_update_ad(ad)
    assert values["LarkDHCPRenewals"] >= 1, values
    assert (values["NetworkConnectionsAllowed"], values["NetworkConnectionsDenied"]) == (1, 1), (
        audit_lines(sandbox)
    )
    assert audit_lines(sandbox)[0]["source"] == values["LarkInnerAddressIPv4"]


FLOOD_JOB = r"""
import errno, signal, socket, sys, time
def term(*_):
    print("term", time.monotonic(), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
addr = sys.argv[1]
print("flooding", flush=True)
i = 0
while True:  # non-blocking connects, never waiting for one: the queue never empties
    s = socket.socket()
    s.setblocking(False)
    # half to one refused port (identical decisions), half to ever new ones (all different)
    s.connect_ex((addr, 8081 if i % 2 else 20000 + i % 40000))
    s.close()
    i += 1
"""
AUDIT_CAP = 100_000


def test_a_connection_flood_leaves_the_agent_responsive_and_the_audit_log_bounded(sandbox, host):
    """One unprivileged process connecting in a loop: the update ad keeps being refreshed,
    TERM reaches the job within 1 s and the agent then cleans up and exits; the audit log
    stays under its cap, with counted lines, and the update ad says what it left out."""
    ad = sandbox.tmp / "flood.ad"
    audit = sandbox.tmp / "audit" / f"{sandbox.job_name()}.jsonl"
    agent = sandbox.start_agent(
        host, *sandbox.who(), "--connection-policy", POLICY,
        "--audit-dir", str(sandbox.tmp / "audit"), "--audit-max-bytes", str(AUDIT_CAP),
        "--update-ad", str(ad), "--accounting-interval", "0.2",
        "--", *python_job(FLOOD_JOB, SITE_ADDR),
    )  # fmt: skip
    try:
        assert sandbox.read_line(agent.stdout).strip() == "flooding"
        seen = []
        for _ in range(3):  # the polls go on: each new update ad counts more decisions
            before = read_update_ad(ad)["NetworkConnectionsDenied"] if ad.exists() else -1
            assert wait_for(
                lambda b=before: ad.exists() and read_update_ad(ad)["NetworkConnectionsDenied"] > b,
                10,
            ), f"the update ad was not refreshed during the flood (last {before})"
            seen.append(read_update_ad(ad)["NetworkConnectionsDenied"])
        sent = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        line = sandbox.read_line(agent.stdout, timeout=10)
        assert line.startswith("term"), line
        assert float(line.split()[1]) - sent < 1.0, "TERM reached the job after more than 1 s"
        _, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:  # (its job may hold the pipes: the sandbox stops it)
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    assert f"{sandbox.job_name()}: cleaned up" in sandbox.log_file.read_text()
    size = audit.stat().st_size
    assert size <= AUDIT_CAP
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert any(x.get("count", 0) > 1 and x["port"] == 8081 for x in lines), lines[:5]
    assert [x for x in lines if "LARK_AUDIT_MAX_BYTES" in x.get("note", "")]
    values = read_update_ad(ad)
    assert values["NetworkAuditRecordsDropped"] > 0
    assert values["NetworkAuditRecordsCoalesced"] > 0
    # every decision is in a line of its own, a count line or the dropped count
    in_log = sum(x.get("count", 1) for x in lines if "verdict" in x)
    total = values["NetworkConnectionsAllowed"] + values["NetworkConnectionsDenied"]
    assert in_log + values["NetworkAuditRecordsDropped"] == total
