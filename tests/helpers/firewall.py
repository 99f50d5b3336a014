"""The firewall backends a NAT test runs against, and a download around a flushed firewall."""

from __future__ import annotations

import subprocess
import time

from sandbox import FILE_SIZES, sh

from helpers.agent import python_job, read_update_ad

BACKENDS = {
    "nftables": ("--firewall-backend", "nftables"),
    "iptables-nft": ("--firewall-backend", "iptables", "--iptables", "iptables-nft"),
    "iptables-legacy": ("--firewall-backend", "iptables", "--iptables", "iptables-legacy"),
}


TWICE = (
    "import sys, urllib.request\n"
    "n = len(urllib.request.urlopen(sys.argv[1]).read())\n"
    "print('first', n, flush=True)\n"
    "sys.stdin.readline()\n"
    "n += len(urllib.request.urlopen(sys.argv[1]).read())\n"
    "print('second', n, flush=True)\n"
)


def fetch_around_a_flush(sandbox, host, flags, flush, check=lambda: None) -> tuple[int, int]:
    """A job downloads, someone flushes the firewall (a command, or a function of the job's
    address; ``check`` looks at it once the agent had its poll), the job downloads again:
    (bytes counted before the flush, at the end)."""
    update = sandbox.tmp / "update.ad"
    argv = sandbox.agent_argv(
        host,
        *sandbox.who(),
        "--update-ad",
        str(update),
        "--accounting-interval",
        "0.1",
        *flags,
        "--",
        *python_job(TWICE, sandbox.url("1m")),
    )
    agent = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert sandbox.read_line(agent.stdout).startswith("first")
        time.sleep(0.3)  # a poll or two: the first download is counted
        before = read_update_ad(update)["NetworkIncoming"]
        if callable(flush):
            flush(read_update_ad(update)["LarkInnerAddressIPv4"])
        else:
            sh(*flush, netns=host.netns)
        time.sleep(0.5)  # the agent notices within a poll and puts its rules back
        check()
        agent.stdin.write("\n")
        agent.stdin.flush()
        out, err = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.terminate()  # the agent stops its job and cleans up
            agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert out.split() == ["second", str(2 * FILE_SIZES["1m"])]
    assert "restoring it" in sandbox.log_file.read_text()
    return before, read_update_ad(update)["NetworkIncoming"]
