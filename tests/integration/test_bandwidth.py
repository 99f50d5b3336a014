"""Bandwidth limits end to end: iperf3 between a NAT job and the site, both ways.

Rates are checked within a generous band (0.8-1.1x the limit: iperf3 counts TCP payload,
the shaper Ethernet frames, ~0.96x; a test is no benchmark), and the sandbox fails the
test on anything left behind, qdiscs going with the veth.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers.agent import PY, cleanup, killed_after_setup, read_update_ad
from helpers.bridge import static_flags
from helpers.iperf import received_mbit, start_iperf, within
from helpers.udp import start_echo
from sandbox import SITE_ADDR, sh

IPERF_PORT = 5211
ECHO_PORT = 5213
SECONDS = "2"
PROBES = 40
# The job's probes: PROBES datagrams of 64 bytes to the echo server, each answered.
PROBE = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("{SITE_ADDR}", {ECHO_PORT}))
for seq in range({PROBES}):
    s.send(bytes(64))
    s.recv(2048)
print("ready", flush=True)
"""


@pytest.fixture
def iperf_site(sandbox):
    return start_iperf(sandbox, SITE_ADDR, IPERF_PORT)


def iperf_job(*extra: str) -> tuple[str, ...]:
    """A job that sends to the site (egress), then receives from it (``-R``: ingress), and
    prints both results as JSON, one after the other."""
    client = f"iperf3 -c {SITE_ADDR} -p {IPERF_PORT} -t {SECONDS} -J"
    return ("/bin/sh", "-c", f"{client} {' '.join(extra)}; {client} -R {' '.join(extra)}")


def rates_mbit(stdout: str) -> tuple[float, float]:
    """(from the job, towards the job) as the receiving side counted them, in Mbit/s."""
    found = received_mbit(stdout)
    assert len(found) == 2, stdout[-500:]
    return found[0], found[1]


def run_iperf(sandbox, host, *flags: str, name: str = "j1"):
    ad = sandbox.tmp / f"{name}.update.ad"
    result = sandbox.run_agent(
        host,
        *sandbox.who(sandbox.job_name(name)),
        "--update-ad",
        str(ad),
        *flags,
        "--",
        *iperf_job(),
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    return rates_mbit(result.stdout), read_update_ad(ad)


@pytest.mark.parametrize(("ingress", "egress"), [(10, 50), (50, 10), (200, 200)])
def test_each_direction_gets_its_own_limit(sandbox, host, iperf_site, ingress, egress):
    (out, into), ad = run_iperf(
        sandbox,
        host,
        "--bandwidth-limit-ingress",
        str(ingress),
        "--bandwidth-limit-egress",
        str(egress),
    )
    print(f"limits {ingress}/{egress}: got {into:.1f}/{out:.1f} Mbit/s")
    assert within(out, egress), (out, egress)
    assert within(into, ingress), (into, ingress)
    if ingress != egress:
        assert ad["LarkBandwidthLimitIngressMbit"] == ingress
        assert ad["LarkBandwidthLimitEgressMbit"] == egress
    assert ad["LarkBandwidthLimitMbit"] == min(ingress, egress)
    assert "HTB with a" in sandbox.log_file.read_text()


def test_the_slots_share_of_the_resource_is_the_limit(sandbox, host, iperf_site):
    machine = sandbox.tmp / "machine.ad"
    machine.write_text("NetworkBandwidth = 10\nLarkBandwidthLimit = 500\n")
    (out, into), ad = run_iperf(sandbox, host, "--machine-ad", str(machine))
    assert within(out, 10) and within(into, 10), (out, into)
    assert ad["LarkBandwidthLimitMbit"] == 10
    assert "LarkBandwidthLimitIngressMbit" not in ad


def test_a_job_without_a_limit_is_not_slowed(sandbox, host, iperf_site):
    machine = sandbox.tmp / "machine.ad"
    machine.write_text("NetworkBandwidth = 0\n")  # the job asked for none: no shaping
    (out, into), ad = run_iperf(sandbox, host, "--machine-ad", str(machine))
    assert out > 300 and into > 300, (out, into)  # a veth carries Gbit/s
    assert "LarkBandwidthLimitMbit" not in ad
    assert "HTB with a" not in sandbox.log_file.read_text()


def test_exempt_networks_are_not_shaped(sandbox, host, iperf_site):
    (out, into), _ad = run_iperf(
        sandbox,
        host,
        "--bandwidth-limit",
        "10",
        "--bandwidth-exempt",
        f"{SITE_ADDR}/32, 2001:db8::/48",
    )
    assert out > 100 and into > 100, (out, into)


@pytest.mark.parametrize(
    ("flags", "ad_text", "line"),
    [
        (
            ("--bandwidth-limit", "0"),
            "",
            'lark-agent: error: LARK_BANDWIDTH_LIMIT "0" (command line --bandwidth-limit) is not '
            "a rate above 0 Mbit/s (unset it for no shaping)",
        ),
        (
            ("--bandwidth-limit-egress", "fast"),
            "",
            'lark-agent: error: LARK_BANDWIDTH_LIMIT_EGRESS "fast" (command line '
            "--bandwidth-limit-egress) is not a rate in Mbit/s (a number, e.g. 100)",
        ),
        (
            (),
            "NetworkBandwidth = -5\n",
            "lark-agent: error: NetworkBandwidth -5 (machine ad, LARK_BANDWIDTH_RESOURCE) is not "
            "a rate above 0 Mbit/s (unset it for no shaping)",
        ),
        (
            (),
            'NetworkBandwidth = "lots"\n',
            'lark-agent: error: NetworkBandwidth "lots" (machine ad, LARK_BANDWIDTH_RESOURCE) '
            "is not a rate in Mbit/s",
        ),
    ],
)
def test_a_bad_value_is_one_line_and_exit_125(sandbox, host, flags, ad_text, line):
    machine = sandbox.tmp / "machine.ad"
    machine.write_text(ad_text)
    r = sandbox.run_agent(
        host, *sandbox.who(sandbox.job_name()), "--machine-ad", str(machine), *flags, "--", "true"
    )
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [line]


def test_a_bridged_job_is_shaped_too(sandbox, host, iperf_site):
    sandbox.kept_links.add("lark")  # (the site bridge stays, as on a node)
    (out, into), ad = run_iperf(sandbox, host, *static_flags(), "--bandwidth-limit", "10")
    assert within(out, 10) and within(into, 10), (out, into)
    assert ad["LarkNetworkType"] == "bridge" and ad["LarkBandwidthLimitMbit"] == 10


def test_two_shaped_jobs_at_once_each_get_their_own_limit(sandbox, host, iperf_site):
    second = sandbox.start_in(sandbox.site, ["iperf3", "-s", "-B", SITE_ADDR, "-p", "5212"])
    sandbox.wait_for_port(sandbox.site, SITE_ADDR, 5212)
    agents = []
    for name, port, limit in (("j1", IPERF_PORT, 10), ("j2", 5212, 30)):
        client = f"iperf3 -c {SITE_ADDR} -p {port} -t {SECONDS} -J"
        agents.append(
            sandbox.start_agent(
                host,
                *sandbox.who(sandbox.job_name(name)),
                "--bandwidth-limit",
                str(limit),
                "--",
                "/bin/sh",
                "-c",
                client,
            )
        )
    for agent, limit in zip(agents, (10, 30), strict=True):
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err
        rate = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
        assert within(rate, limit), (rate, limit)
    second.terminate()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"_LARK_TEST_KERNEL_LACKS": "htb"},
            "lark-agent: error: shape e_{name} to 10 Mbit/s: add an HTB qdisc to e_{name}: "
            "this kernel lacks HTB (CONFIG_NET_SCH_HTB)",
        ),
        (
            {"_LARK_TEST_KERNEL_LACKS": "tbf"},
            "lark-agent: error: shape e_{name} to 10 Mbit/s: add a TBF qdisc to e_{name}: "
            "this kernel lacks TBF (CONFIG_NET_SCH_TBF)",
        ),
        (
            {"_LARK_TEST_FAIL_AFTER": "shape-ingress"},
            "lark-agent: error: shape i_{name}: injected by _LARK_TEST_FAIL_AFTER",
        ),
    ],
)
def test_a_limit_the_kernel_refuses_is_one_line_125_and_nothing_left(sandbox, host, env, line):
    name = sandbox.job_name()
    r = sandbox.run_agent(
        host, *sandbox.who(name), "--bandwidth-limit", "10", "--", "true", env=env
    )
    assert r.returncode == 125
    said = [s for s in r.stderr.strip().splitlines() if "WARNING: test failure" not in s]
    assert said == [line.format(name=name)]
    assert not sandbox.wait_clean()


def test_status_shows_the_limits_and_startd_attrs_whether_the_node_can_shape(sandbox, host):
    agent = sandbox.start_agent(
        host,
        *sandbox.who(),
        "--bandwidth-limit",
        "10",
        "--bandwidth-limit-egress",
        "2.5",
        "--",
        "/bin/sh",
        "-c",
        "echo ready; sleep 30",
    )
    try:
        assert sandbox.read_line(agent.stdout).strip() == "ready"
        argv = sandbox.agent_argv(host, "--state-dir", str(sandbox.state_dir), verb="status")
        table = sh(*argv[2:], netns=host.netns).stdout.splitlines()
        assert "MBIT/S IN/OUT" in table[0] and " 10/2.5 " in table[1]
        [row] = json.loads(sh(*argv[2:], "--json", netns=host.netns).stdout)
        assert (row["bandwidth_in_mbit"], row["bandwidth_out_mbit"]) == (10, 2.5)
    finally:
        agent.terminate()
        agent.communicate(timeout=30)
    argv = sandbox.agent_argv(host, "--lock-dir", str(sandbox.lock_dir), verb="startd-attrs")
    for lacks, can in (("", True), ("htb", False), ("tbf", False)):
        env = {**os.environ, "_LARK_TEST_KERNEL_LACKS": lacks}
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        assert f"LarkBandwidthShaping = {str(can).lower()}" in r.stdout.splitlines()


def class_sent(dev: str, netns: str) -> dict[str, tuple[int, int]]:
    """HTB class -> (bytes, packets) it sent, from ``tc -s class show``."""
    found, current = {}, ""
    for line in sh("tc", "-s", "class", "show", "dev", dev, netns=netns).stdout.splitlines():
        words = line.split()
        if words[:2] == ["class", "htb"]:
            current = words[2]
        elif words[:1] == ["Sent"] and current:
            found[current] = (int(words[1]), int(words[3]))
    return found


def test_short_packets_have_their_own_class_and_bulk_the_splitters(sandbox, host, iperf_site):
    start_echo(sandbox, SITE_ADDR, ECHO_PORT)
    name = sandbox.job_name()
    download = f"iperf3 -c {SITE_ADDR} -p {IPERF_PORT} -t 1 -R >/dev/null"
    agent = sandbox.start_agent(
        host,
        *sandbox.who(name),
        "--bandwidth-limit",
        "10",
        "--",
        "/bin/sh",
        "-c",
        f"{download} && {PY} -I -c '{PROBE}' && sleep 30",
    )
    try:
        assert sandbox.read_line(agent.stdout, timeout=60).strip() == "ready"
        sent = class_sent(f"e_{name}", host.netns)
    finally:
        agent.terminate()
        agent.communicate(timeout=30)
    short_bytes, short_packets = sent["1:10"]
    bulk_bytes, _ = sent["1:11"]
    # the echoes, and the short packets of the TCP connections (SYN-ACKs, pure ACKs)
    assert short_packets >= PROBES and short_bytes < 256 * short_packets, sent
    assert bulk_bytes > 500_000, sent  # ~1 s of the download at 10 Mbit/s


def test_a_killed_shaped_agents_job_is_swept_with_its_qdiscs(sandbox, host):
    name = sandbox.job_name("dead")
    killed_after_setup(sandbox, host, name, "--bandwidth-limit", "10")
    qdiscs = sh("tc", "qdisc", "show", "dev", f"e_{name}", netns=host.netns).stdout
    assert "qdisc htb 1: root" in qdiscs
    r = cleanup(sandbox, host)
    assert r.returncode == 0, r.stderr
    assert not sandbox.wait_clean()
    assert f"e_{name}" not in sh("ip", "-o", "link", "show", netns=host.netns).stdout
