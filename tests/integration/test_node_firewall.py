"""The node's own firewall: FORWARD policy DROP, a site tool's rules above Lark's, and a full
``iptables-restore`` mid-job, with each firewall backend and each iptables build."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.agent import cleanup, killed_after_setup, python_job, read_update_ad, run_fetch
from helpers.firewall import BACKENDS
from sandbox import FILE_SIZES, SITE_ADDR, sh, wait_for

BUILDS = ("iptables-nft", "iptables-legacy")
SPOOFED = "192.168.181.250"
UDP_PORT = 9999

# Downloads, sends one datagram from an address not its own and one from its own (the site
# writes down each it gets), waits for a line on stdin, and does it all again.
JOB = (
    "import socket, subprocess, sys, urllib.request\n"
    "url, site, ifname = sys.argv[1:4]\n"
    f"subprocess.run(['ip', 'addr', 'add', '{SPOOFED}/32', 'dev', ifname], check=True)\n"
    "def round(tag):\n"
    "    n = len(urllib.request.urlopen(url, timeout=20).read())\n"
    f"    for src in ('{SPOOFED}', None):\n"
    "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "        if src:\n"
    "            s.bind((src, 0))\n"
    f"        s.sendto(f'{{tag}} {{src or \"own\"}}'.encode(), (site, {UDP_PORT}))\n"
    "        s.close()\n"
    "    print(tag, n, flush=True)\n"
    "round('first')\n"
    "sys.stdin.readline()\n"
    "round('second')\n"
)
LISTENER = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1], int(sys.argv[2])))\n"
    "with open(sys.argv[3], 'a') as out:\n"
    "    while True:\n"
    "        data, peer = s.recvfrom(200)\n"
    "        out.write(f'{peer[0]} {data.decode()}\\n'); out.flush()\n"
)


def node_build(backend: tuple[str, ...]) -> str:
    """The iptables build whose FORWARD drops: the backend's own, or iptables-nft's."""
    return backend[3] if backend[1] == "iptables" else "iptables-nft"


def drop_forward(host, build: str) -> None:
    """The execute host's filter FORWARD drops what nothing accepts (Docker, hardened sites)."""
    sh(build, "-w", "-P", "FORWARD", "DROP", netns=host.netns)


def lark_first(host, build: str) -> bool:
    """FORWARD's first rule is Lark's again (the agent logs before its batch is in)."""
    rules = sh(build, "-w", "-S", "FORWARD", netns=host.netns).stdout.splitlines()
    return len(rules) > 1 and "-j LARK" in rules[1]


def forward_policy(host, build: str) -> str:
    out = sh(f"{build}-save", "-t", "filter", netns=host.netns).stdout
    return next(ln.split()[1] for ln in out.splitlines() if ln.startswith(":FORWARD"))


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> tuple[str, ...]:
    return BACKENDS[request.param]


@pytest.mark.parametrize("build", BUILDS)
def test_forward_policy_drop_is_opened_for_the_job_and_closed_after(sandbox, host, backend, build):
    drop_forward(host, build)
    r, update = run_fetch(sandbox, host, "1m", *backend)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(FILE_SIZES["1m"])
    assert read_update_ad(update)["NetworkIncoming"] >= FILE_SIZES["1m"]
    log = sandbox.log_file.read_text()
    assert f"FORWARD policy DROP on this node ({build}): accepting the job's traffic" in log
    assert "LARK-FORWARD" in log
    assert forward_policy(host, build) == "DROP"  # the node's own stays as it was
    assert "LARK" not in sh(f"{build}-save", netns=host.netns).stdout


def test_firewalld_is_named_with_what_to_configure(sandbox, host):
    """No firewalld here: its table (as firewalld makes it) is enough for Lark to say so."""
    sh("nft", "add table inet firewalld", netns=host.netns)
    r, _ = run_fetch(sandbox, host, "1k")
    assert r.returncode == 0, r.stderr
    assert "firewalld runs on this node" in r.stderr
    assert "--zone=trusted --add-source=192.168.181.0/24" in r.stderr


def test_a_native_nft_forward_drop_is_named_with_what_to_add(sandbox, host):
    """A table of the node's own whose forward chain drops by policy: Lark cannot accept the
    job's traffic there (it is not Lark's table), so it says what to add."""
    sh("nft", "add table inet site; add chain inet site fw { type filter hook forward "
       "priority 0; policy drop; }", netns=host.netns)  # fmt: skip
    r = sandbox.run_agent(host, *sandbox.who(), "--", "true")
    assert r.returncode == 0, r.stderr
    assert "nft table inet site drops forwarded packets by policy (chain fw)" in r.stderr
    assert 'iifname "e_*" accept' in r.stderr


class MidJob:
    """A job of JOB under an agent polling every 0.1 s, and the site's datagram log."""

    def __init__(self, sandbox, host, backend: tuple[str, ...]) -> None:
        self.sandbox, self.host = sandbox, host
        self.got = sandbox.tmp / "datagrams"
        self.got.touch()
        sandbox.start_in(sandbox.site, [sys.executable, "-c", LISTENER, SITE_ADDR,
                                        str(UDP_PORT), str(self.got)])  # fmt: skip
        self.update = sandbox.tmp / "update.ad"
        name = sandbox.job_name()
        argv = sandbox.agent_argv(
            host,
            "--user",
            "root",
            "--allow-root",
            "--name",
            name,
            "--update-ad",
            str(self.update),
            "--accounting-interval",
            "0.1",
            *backend,
            "--",
            *python_job(JOB, sandbox.url("1m"), SITE_ADDR, f"i_{name}"),
        )
        self.agent = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def round(self, tag: str) -> None:
        """The job's download of this round is done and its datagrams are in."""
        line = self.sandbox.read_line(self.agent.stdout).split()
        assert line == [tag, str(FILE_SIZES["1m"])], line
        assert wait_for(lambda: f"{tag} own" in self.got.read_text(), 10), self.got.read_text()
        if tag == "first":  # a poll counted it (what crosses between a poll and a flush is lost)
            assert wait_for(lambda: self.incoming() >= FILE_SIZES["1m"], 10)

    def incoming(self) -> int:
        try:
            return int(read_update_ad(self.update).get("NetworkIncoming", 0))
        except (OSError, ValueError):
            return 0

    def logged(self, text: str) -> bool:
        return wait_for(lambda: text in self.sandbox.log_file.read_text(), 10)

    def finish(self) -> tuple[str, str]:
        self.agent.stdin.write("\n")
        self.agent.stdin.flush()
        self.round("second")
        out, err = self.agent.communicate(timeout=60)
        assert self.agent.returncode == 0, err
        return out, err

    def close(self) -> None:
        if self.agent.poll() is None:
            self.agent.terminate()
            self.agent.communicate(timeout=30)


def test_a_site_rule_inserted_above_larks_is_put_below_them_again(sandbox, host, backend):
    """A site tool reloading its rules puts ``-I FORWARD 1 -j ACCEPT`` on top: that would
    skip the iptables backend's counting and anti-spoofing; Lark moves its jumps back above
    it at its next poll (the nftables backend counts in its own table, which no iptables
    rule reorders). The site's rule stays."""
    build = node_build(backend)
    drop_forward(host, build)
    job = MidJob(sandbox, host, backend)
    try:
        job.round("first")
        sh(build, "-w", "-I", "FORWARD", "1", "-j", "ACCEPT", netns=host.netns)
        assert job.logged("restoring its place"), sandbox.log_file.read_text()
        assert wait_for(lambda: lark_first(host, build), 10)
        _, err = job.finish()
    finally:
        job.close()
    assert "incomplete" not in err, err
    got = job.got.read_text()
    assert SPOOFED not in got and "second own" in got, got
    assert read_update_ad(job.update)["NetworkIncoming"] >= 2 * FILE_SIZES["1m"]
    rules = sh(build, "-w", "-S", "FORWARD", netns=host.netns).stdout
    assert "-A FORWARD -j ACCEPT" in rules and forward_policy(host, build) == "DROP"


def test_a_full_iptables_restore_mid_job_is_repaired(sandbox, host, backend):
    """A site tool restores a ruleset saved before the job, without ``--noflush``: Lark's
    chains and jumps are gone whatever the build's words for it; Lark puts them back, the
    job is accepted, counted and kept to its own address again, and teardown completes."""
    build = node_build(backend)
    drop_forward(host, build)
    saved = sh(f"{build}-save", netns=host.netns).stdout
    job = MidJob(sandbox, host, backend)
    try:
        job.round("first")
        restore = ["nsenter", f"--net=/run/netns/{host.netns}", f"{build}-restore"]
        subprocess.run(restore, input=saved, text=True, check=True)
        assert job.logged("restoring it"), sandbox.log_file.read_text()
        assert wait_for(lambda: lark_first(host, build), 10)
        _, err = job.finish()
    finally:
        job.close()
    assert "incomplete" not in err and "could not restore" not in err, err
    got = job.got.read_text()
    assert SPOOFED not in got, got
    assert read_update_ad(job.update)["NetworkIncoming"] >= 2 * FILE_SIZES["1m"]
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0 and swept.stdout.strip() == "no orphans", swept.stdout


@pytest.mark.parametrize("build", BUILDS)
def test_cleanup_of_a_job_whose_rules_a_full_restore_took_completes(sandbox, host, build):
    """The agent is killed, then a full restore takes its chain and jumps: ``cleanup NAME``
    removes what is left (the masquerade, the namespace, ...), treats the rest as done, and
    the record goes; a second sweep finds nothing."""
    drop_forward(host, build)
    saved = sh(f"{build}-save", netns=host.netns).stdout
    name = sandbox.job_name()
    backend = ("--firewall-backend", "iptables", "--iptables", build)
    killed_after_setup(sandbox, host, name, *backend)  # its firewall is all there
    restore = ["nsenter", f"--net=/run/netns/{host.netns}", f"{build}-restore"]
    subprocess.run(restore, input=saved, text=True, check=True)
    assert "LARK_" in sh(f"{build}-save", "-t", "nat", netns=host.netns).stdout  # half gone
    named = sandbox.agent_argv(
        host,
        name,
        "--state-dir",
        str(sandbox.state_dir),
        "--lock-dir",
        str(sandbox.lock_dir),
        verb="cleanup",
    )
    done = sh(*named[2:], netns=host.netns, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{name}: cleaned up" in done.stdout
    assert not (sandbox.state_dir / f"{name}.json").exists()
    again = cleanup(sandbox, host)
    assert again.returncode == 0 and again.stdout.strip() == "no orphans", again.stdout
    assert "LARK" not in sh(f"{build}-save", netns=host.netns).stdout


def test_docker_style_forward_is_opened_and_named(sandbox, host):
    """Docker's shape: policy DROP and its DOCKER-USER chain jumped to from FORWARD."""
    for step in (("-N", "DOCKER-USER"), ("-A", "DOCKER-USER", "-j", "RETURN"),
                 ("-I", "FORWARD", "-j", "DOCKER-USER"), ("-P", "FORWARD", "DROP")):  # fmt: skip
        sh("iptables-nft", "-w", *step, netns=host.netns)
    r, _ = run_fetch(sandbox, host, "1m")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(FILE_SIZES["1m"])
    assert "FORWARD policy DROP (Docker's DOCKER-USER is there)" in sandbox.log_file.read_text()
    rules = sh("iptables-nft", "-w", "-S", netns=host.netns).stdout
    assert "-A FORWARD -j DOCKER-USER" in rules and "-A DOCKER-USER -j RETURN" in rules


@pytest.mark.parametrize("record", ["kept", "lost"])
def test_a_dead_agents_accept_rules_are_swept(sandbox, host, record):
    """The nftables backend's job on a legacy FORWARD DROP, its agent killed: the sweeper
    removes its accept rules from the record, or, with the record lost, by their comment."""
    drop_forward(host, "iptables-legacy")
    name = sandbox.job_name()
    killed_after_setup(sandbox, host, name)
    assert f"comment {f'LARK_{name}'}" in sh("iptables-legacy-save", netns=host.netns).stdout
    if record == "lost":
        (sandbox.state_dir / f"{name}.json").unlink()
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    if record == "lost":
        assert f"iptables-legacy chain LARK_{name}" in swept.stdout
    assert "LARK" not in sh("iptables-legacy-save", netns=host.netns).stdout
    assert forward_policy(host, "iptables-legacy") == "DROP"
