"""What a job sees: its resolv.conf and hosts, resolving names from its namespace however the
node resolves them (a loopback resolver relayed, the DHCP lease's servers, the admin's), and
the node's own files never changed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest
from helpers.agent import cleanup, python_job, read_update_ad
from helpers.bridge import bridge_flags, static_flags
from helpers.dns import (
    RESOLVE_JOB,
    SITE_NAME,
    add_loopback_address,
    dns_queries,
    machine_resolv_conf,
    needs_own_root,
    run,
    start_dns,
    with_node_resolv_conf,
)
from sandbox import SITE_ADDR, SITE_NET, start_kea, wait_for

SHOW_FILES = python_job(
    "import socket\n"
    "print(open('/etc/resolv.conf').read())\n"
    "print('=====')\n"
    "print(open('/etc/hosts').read())\n"
    "print('=====')\n"
    "print(socket.gethostbyname(socket.gethostname()))\n"
)


def _resolving_job(sandbox, host, *flags: str, name: str | None = None) -> list[str]:
    ad = sandbox.tmp / "update.ad"
    return sandbox.agent_argv(
        host,
        *sandbox.who(name),
        "--update-ad",
        str(ad),
        *flags,
        "--",
        *python_job(RESOLVE_JOB),
        SITE_NAME,
    )


def _resolved(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert f"resolved {SITE_ADDR}" in result.stdout
    assert f"tcp {SITE_ADDR}" in result.stdout
    assert "fetched 1000" in result.stdout


def test_a_nat_job_resolves_through_the_nodes_loopback_resolver_over_udp_and_tcp(sandbox, host):
    """The node's resolver is on 127.0.0.53 (as systemd-resolved's is): the job's resolv.conf
    stays the node's, and the same address answers inside the job's namespace."""
    add_loopback_address(host.netns, "127.0.0.53")
    log = start_dns(sandbox, host.netns, "127.0.0.53")
    before = machine_resolv_conf()
    argv = _resolving_job(sandbox, host)
    result = run(with_node_resolv_conf(sandbox, "nameserver 127.0.0.53\nsearch x.test\n", argv))
    _resolved(result)
    assert dns_queries(log) >= 2  # (the node's resolver answered both: UDP, then TCP)
    ad = read_update_ad(sandbox.tmp / "update.ad")
    assert ad["LarkJobDNS"] == "node: 127.0.0.53 (relayed)"
    assert ad["NetworkRelayedOutgoing"] > 0 and ad["NetworkRelayedIncoming"] > 0
    assert machine_resolv_conf() == before


def test_without_the_relay_a_loopback_resolver_is_unreachable_from_the_job(sandbox, host):
    """The same job with the node's resolver on loopback but the job told of another loopback
    address that nothing relays: no answer (so the test above is the relay's doing)."""
    add_loopback_address(host.netns, "127.0.0.53")
    start_dns(sandbox, host.netns, "127.0.0.53")
    job = python_job(
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n"
        "s.sendto(b'x' * 20, ('127.0.0.53', 53))\n"
        "try:\n    s.recv(512); print('answered')\nexcept OSError: print('silent')\n"
    )
    argv = sandbox.agent_argv(host, *sandbox.who(), "--", *job)
    # the node's resolver is elsewhere: nothing relays 127.0.0.53 into the job
    result = run(with_node_resolv_conf(sandbox, f"nameserver {SITE_ADDR}\n", argv))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "silent"


def test_a_nat_job_uses_a_resolver_elsewhere_on_the_lan_directly(sandbox, host):
    log = start_dns(sandbox, sandbox.site, SITE_ADDR)
    argv = _resolving_job(sandbox, host)
    result = run(with_node_resolv_conf(sandbox, f"nameserver {SITE_ADDR}\n", argv))
    _resolved(result)
    assert dns_queries(log) >= 2
    ad = read_update_ad(sandbox.tmp / "update.ad")
    assert ad["LarkJobDNS"] == f"node: {SITE_ADDR}"
    assert ad.get("NetworkRelayedOutgoing", 0) == 0


def _bridged_view(sandbox, host, *flags: str) -> tuple[str, str, str]:
    needs_own_root()
    sandbox.kept_links.add("lark")
    before = machine_resolv_conf()
    argv = sandbox.agent_argv(host, *sandbox.who(), *flags, "--", *SHOW_FILES)
    result = run(with_node_resolv_conf(sandbox, "nameserver 127.0.0.53\nsearch node.test\n", argv))
    assert result.returncode == 0, result.stderr + sandbox.log_file.read_text()
    assert machine_resolv_conf() == before
    resolv, hosts, own = result.stdout.split("=====\n")
    return resolv, hosts, own.strip()


def test_a_bridged_job_gets_the_dhcp_servers_dns_and_its_own_name(sandbox, host):
    start_kea(
        sandbox,
        lifetime=60,
        options=(
            ("domain-name-servers", f"{SITE_ADDR}, {SITE_NET}.2"),
            ("domain-name", "lan.test"),
        ),
    )
    resolv, hosts, own = _bridged_view(sandbox, host, *bridge_flags())
    servers = re.findall(r"^nameserver (\S+)$", resolv, re.M)
    assert servers == [SITE_ADDR, f"{SITE_NET}.2"]
    assert re.search(r"^search lan\.test$", resolv, re.M)
    assert "127.0.0.53" not in resolv
    first = next(ln for ln in hosts.splitlines() if ln and not ln.startswith("#"))
    address = first.split()[0]
    assert address.startswith(f"{SITE_NET}.1")  # (Kea's pool: .100 - .150)
    assert own == address  # the node's hostname is the job's own address inside the job


def test_a_bridged_job_with_a_lease_without_dns_gets_the_nodes_relayed(sandbox, host):
    start_kea(sandbox, lifetime=60)
    resolv, _, _ = _bridged_view(sandbox, host, *bridge_flags())
    assert re.findall(r"^nameserver (\S+)$", resolv, re.M) == ["127.0.0.53"]


def test_a_static_bridged_job_gets_lark_job_dns(sandbox, host):
    resolv, _, own = _bridged_view(sandbox, host, *static_flags(), "--job-dns", SITE_ADDR)
    assert re.findall(r"^nameserver (\S+)$", resolv, re.M) == [SITE_ADDR]
    assert re.search(r"^search node\.test$", resolv, re.M)  # (the node's search list kept)
    assert own == f"{SITE_NET}.60"


def test_the_jobs_resolv_conf_follows_a_renewed_lease(sandbox, host):
    needs_own_root()
    sandbox.kept_links.add("lark")
    _, kea = start_kea(sandbox, lifetime=6, options=(("domain-name-servers", SITE_ADDR),))
    job = python_job(
        "import sys, time\n"
        "seen = []\n"
        "end = time.time() + 20\n"
        "while time.time() < end:\n"
        "    text = open('/etc/resolv.conf').read()\n"
        "    if text not in seen:\n"
        "        seen.append(text); print(text.replace(chr(10), '|'), flush=True)\n"
        "    if '10.77.0.3' in text: break\n"
        "    time.sleep(0.1)\n"
    )
    agent = subprocess.Popen(
        with_node_resolv_conf(
            sandbox, "nameserver 127.0.0.53\n",
            sandbox.agent_argv(host, *sandbox.who(), *bridge_flags(), "--", *job),
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sandbox.read_line(agent.stdout).count(f"nameserver {SITE_ADDR}") == 1
        kea.send_signal(signal.SIGTERM)
        kea.wait(5)
        start_kea(
            sandbox, lifetime=6, tag="kea2", options=(("domain-name-servers", f"{SITE_NET}.3"),)
        )
        assert "nameserver 10.77.0.3" in sandbox.read_line(agent.stdout, 20)
        _, err = agent.communicate(timeout=30)
        assert agent.returncode == 0, err
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert "DNS now DHCP lease: 10.77.0.3" in sandbox.log_file.read_text()


def test_the_admins_resolv_conf_is_used_as_is(sandbox, host):
    needs_own_root()
    own = sandbox.tmp / "job-resolv.conf"
    own.write_text(f"# the site's\nnameserver {SITE_ADDR}\noptions ndots:2\n")
    before = machine_resolv_conf()
    r = sandbox.run_agent(
        host, *sandbox.who(), "--job-resolv-conf", str(own), "--", "/bin/cat", "/etc/resolv.conf"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == own.read_text()
    assert machine_resolv_conf() == before


@pytest.mark.parametrize("kind", ["user's", "world-writable", "symlink to a user's", "missing"])
def test_a_resolv_conf_anyone_but_root_could_write_is_refused_in_one_line(sandbox, host, kind):
    path = sandbox.tmp / "job-resolv.conf"
    if kind == "user's":
        path.write_text("nameserver 10.9.9.9\n")
        os.chown(path, 65534, 65534)
    elif kind == "world-writable":
        path.write_text("nameserver 10.9.9.9\n")
        path.chmod(0o666)
    elif kind == "symlink to a user's":
        target = sandbox.tmp / "users"
        target.mkdir()
        os.chown(target, 65534, 65534)
        (target / "f").write_text("nameserver 10.9.9.9\n")
        path.symlink_to(target / "f")
    r = sandbox.run_agent(host, *sandbox.who(), "--job-resolv-conf", str(path), "--", "/bin/true")
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "LARK_JOB_RESOLV_CONF" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_status_json_shows_each_jobs_dns_path(sandbox, host):
    add_loopback_address(host.netns, "127.0.0.53")
    start_dns(sandbox, host.netns, "127.0.0.53")
    argv = sandbox.agent_argv(
        host,
        *sandbox.who(),
        "--",
        *python_job("import time; print('up', flush=True); time.sleep(30)"),
    )
    agent = subprocess.Popen(
        with_node_resolv_conf(sandbox, "nameserver 127.0.0.53\n", argv),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sandbox.read_line(agent.stdout) == "up\n"
        status = sandbox.run_agent(
            host, "--json", "--state-dir", str(sandbox.state_dir), verb="status"
        )
        rows = json.loads(status.stdout)
        (row,) = [r for r in rows if r["name"] == sandbox.job_name()]
        assert row["dns"] == "node: 127.0.0.53 (relayed)"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)


def test_a_job_killed_hard_leaves_its_files_to_the_sweeper(sandbox, host):
    """SIGKILL of the agent: the job's files in the state dir go with ``cleanup``."""
    sandbox.kept_links.add("lark")
    resolv = sandbox.tmp / "job-resolv.conf"
    resolv.write_text(f"nameserver {SITE_ADDR}\n")
    agent = sandbox.start_agent(
        host, *sandbox.who(), "--job-resolv-conf", str(resolv), "--",
        *python_job("import time; print('up', flush=True); time.sleep(60)"),
    )  # fmt: skip
    assert sandbox.read_line(agent.stdout) == "up\n"
    view = sandbox.state_dir / f"{sandbox.job_name()}.view"
    assert (view / "resolv.conf").read_text() == resolv.read_text()
    agent.kill()
    agent.wait()
    r = cleanup(sandbox, host)
    assert r.returncode == 0, r.stderr
    assert not view.exists()
    assert wait_for(lambda: not sandbox.leftovers(), 10), sandbox.leftovers()


@pytest.mark.parametrize("verdict", ["allow", "deny"])
def test_relayed_dns_is_decided_and_audited_by_the_connection_policy(sandbox, host, verdict):
    """The job's DNS to the node's loopback resolver is a UDP flow like any other to the
    policy: decided by the address the job used, written to the audit log."""
    add_loopback_address(host.netns, "127.0.0.53")
    log = start_dns(sandbox, host.netns, "127.0.0.53")
    policy = f"{verdict} udp 127.0.0.53:53, allow tcp {SITE_ADDR}:8080, deny any 0.0.0.0/0"
    job = python_job(
        "import socket\n"
        "try:\n    print(socket.gethostbyname('site.example'))\n"
        "except OSError:\n    print('unresolved')\n"
    )
    argv = sandbox.agent_argv(
        host, *sandbox.who(), "--connection-policy", policy,
        "--audit-dir", str(sandbox.tmp / "audit"), "--", *job,
    )  # fmt: skip
    r = run(with_node_resolv_conf(sandbox, "nameserver 127.0.0.53\n", argv))
    assert r.returncode == 0, r.stderr
    audit = sandbox.tmp / "audit" / f"{sandbox.job_name()}.jsonl"
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    dns = [x for x in lines if x["destination"] == "127.0.0.53"]
    assert dns and {(x["protocol"], x["port"], x["verdict"]) for x in dns} == {("udp", 53, verdict)}
    if verdict == "allow":
        assert r.stdout.strip() == SITE_ADDR
        assert dns_queries(log) >= 1
    else:
        assert r.stdout.strip() == "unresolved"
        assert dns_queries(log) == 0  # (refused in the relay: the node's resolver never asked)


@pytest.mark.parametrize("verdict", ["allow", "deny"])
def test_a_node_resolver_on_ipv6_loopback_is_relayed_and_decided_by_ipv6_entries(
    sandbox, host, verdict
):
    """A node resolver on ::1 under a connection policy: relayed into the job's namespace
    (which keeps its ::1), each flow decided by the policy's IPv6 entries and audited."""
    log = start_dns(sandbox, host.netns, "::1")
    policy = f"{verdict} udp [::1]:53, {verdict} tcp [::1]:53, deny any 0.0.0.0/0"
    job = python_job(
        "import socket\n"
        "try:\n    print(socket.gethostbyname('site.example'))\n"
        "except OSError:\n    print('unresolved')\n"
    )
    argv = sandbox.agent_argv(
        host, *sandbox.who(), "--connection-policy", policy,
        "--audit-dir", str(sandbox.tmp / "audit"), "--", *job,
    )  # fmt: skip
    r = run(with_node_resolv_conf(sandbox, "nameserver ::1\n", argv))
    assert r.returncode == 0, r.stderr
    assert "relaying into the job's namespace: udp [::1]:53" in sandbox.log_file.read_text()
    audit = sandbox.tmp / "audit" / f"{sandbox.job_name()}.jsonl"
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    dns = [x for x in lines if x["destination"] == "::1"]
    assert dns and {(x["protocol"], x["port"], x["verdict"]) for x in dns} == {("udp", 53, verdict)}
    assert {x["source"] for x in dns} == {"::1"}
    if verdict == "allow":
        assert r.stdout.strip() == SITE_ADDR
        assert dns_queries(log) >= 1
    else:
        assert r.stdout.strip() == "unresolved"
        assert dns_queries(log) == 0


def test_an_admins_loopback_service_reaches_the_job_and_no_other(sandbox, host):
    """``--job-loopback-services`` relays exactly what it lists: another service on the
    node's loopback stays out of the job's reach."""
    code = (
        "import socket, sys, threading\n"
        "def serve(port):\n"
        "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    s.bind(('127.0.0.1', port)); s.listen(8)\n"
        "    while True:\n"
        "        c = s.accept()[0]; c.sendall(b'squid %d' % port); c.close()\n"
        "for p in (3128, 3129):\n"
        "    threading.Thread(target=serve, args=(p,)).start()\n"
    )
    sandbox.start_in(host.netns, ["/usr/bin/python3", "-I", "-c", code])
    sandbox.wait_for_port(host.netns, "127.0.0.1", 3129)
    job = python_job(
        "import socket\n"
        "for port in (3128, 3129):\n"
        "    try:\n"
        "        with socket.create_connection(('127.0.0.1', port), timeout=3) as s:\n"
        "            print(s.recv(64).decode())\n"
        "    except OSError:\n"
        "        print('closed', port)\n"
    )
    r = sandbox.run_agent(
        host, *sandbox.who(), "--job-loopback-services", "tcp 127.0.0.1:3128", "--", *job
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["squid 3128", "closed 3129"]
    assert "relaying into the job's namespace: tcp 127.0.0.1:3128" in sandbox.log_file.read_text()


def test_the_job_has_a_mount_namespace_of_its_own_that_never_reaches_the_node(sandbox, host):
    """The job (root here, to try) mounts in its namespace: the node never sees it; and its
    mount namespace is not the agent's."""
    needs_own_root()
    job = python_job(
        "import os, subprocess\n"
        "print(os.readlink('/proc/self/ns/mnt'))\n"
        "subprocess.run(['mount', '-t', 'tmpfs', 'lark-test', '/mnt'], check=True)\n"
        "print(open('/proc/self/mounts').read().count('lark-test'))\n"
    )
    r = sandbox.run_agent(host, "--user", "root", "--allow-root", "--name", sandbox.job_name(),
                          "--", *job)  # fmt: skip
    assert r.returncode == 0, r.stderr
    own, seen = r.stdout.split()
    assert own != os.readlink("/proc/self/ns/mnt")
    assert seen == "1"
    with open("/proc/self/mounts") as f:
        assert "lark-test" not in f.read()
