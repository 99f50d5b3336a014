"""A job's MTU is its network's: on a LAN of 9000-byte frames the node keeps sending them
while jobs run, a bridged job sends them too, and a NAT job's veth follows the uplink within
LARK_JOB_MTU."""

from __future__ import annotations

import subprocess

import pytest
from helpers.agent import python_job
from helpers.bridge import static_flags
from sandbox import PING, SITE_ADDR, ping, sh

JUMBO = 9000
BIG = 8000

# The job says its veth's MTU, sends 8000 bytes unfragmented, then waits for a line.
JOB = """
import fcntl, socket, struct, subprocess, sys
name, site, size, ping = sys.argv[1:]
ask = struct.pack("16si", name.encode(), 0)
mtu = struct.unpack("16si", fcntl.ioctl(socket.socket(), 0x8921, ask))[1]  # SIOCGIFMTU
print("mtu", mtu, flush=True)
sent = subprocess.run([sys.executable, "-I", "-c", ping, site, size], capture_output=True)
print("pinged" if sent.returncode == 0 else "ping failed", flush=True)
sys.stdin.readline()
"""


def start_job(sandbox, host, *flags: str) -> subprocess.Popen:
    name = sandbox.job_name()
    argv = sandbox.agent_argv(
        host,
        "--user",
        "root",
        "--allow-root",  # (ping's raw socket)
        "--name",
        name,
        *flags,
        "--",
        *python_job(JOB, f"i_{name}", SITE_ADDR, str(BIG), PING),
    )
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sandbox.procs.append(proc)
    return proc


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate("\n", timeout=30)
    assert proc.returncode == 0, err


def link_mtu(netns: str, link: str) -> int:
    out = sh("ip", "-o", "link", "show", "dev", link, netns=netns).stdout
    return int(out.split(" mtu ")[1].split()[0])


def test_a_bridged_job_keeps_the_lan_jumbo_for_the_node_and_itself(sandbox, host):
    sandbox.kept_links.add("lark")
    sandbox.set_lan_mtu(host, JUMBO)
    proc = start_job(sandbox, host, *static_flags())
    try:
        assert sandbox.read_line(proc.stdout).strip() == f"mtu {JUMBO}"
        assert sandbox.read_line(proc.stdout).strip() == "pinged"
        # while the job runs the bridge -- the node's own LAN link now -- is still jumbo
        assert link_mtu(host.netns, "lark") == JUMBO
        ping(host.netns, SITE_ADDR, BIG)
    finally:
        finish(proc)
    assert link_mtu(host.netns, "lark") == JUMBO
    ping(host.netns, SITE_ADDR, BIG)


@pytest.mark.parametrize(
    ("route_mtu", "flags", "expected"),
    [(None, (), JUMBO), (4000, (), 4000), (None, ("--job-mtu", "1400"), 1400)],
)
def test_a_nat_jobs_mtu_follows_the_uplink_within_the_admins_cap(
    sandbox, host, route_mtu, flags, expected
):
    sandbox.set_lan_mtu(host, JUMBO)
    if route_mtu is not None:
        sh(
            "ip", "route", "change", "default", "via", SITE_ADDR, "dev", "uplink",
            "mtu", str(route_mtu), netns=host.netns,
        )  # fmt: skip
    proc = start_job(sandbox, host, *flags)
    try:
        assert sandbox.read_line(proc.stdout).strip() == f"mtu {expected}"
        assert sandbox.read_line(proc.stdout).strip() == (
            "pinged" if expected >= BIG + 28 else "ping failed"  # (IPv4 and ICMP headers)
        )
        assert link_mtu(host.netns, f"e_{sandbox.job_name()}") == expected
    finally:
        finish(proc)
    assert link_mtu(host.netns, "uplink") == JUMBO
