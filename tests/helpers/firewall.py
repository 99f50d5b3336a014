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


def fetch_around_a_flush(
    sandbox,
    host,
    flags,
    flush,
    check=lambda: None,
    url: str | None = None,
    counter: str = "NetworkIncoming",
    address: str = "LarkInnerAddressIPv4",
) -> tuple[int, int]:
    """A job downloads (``url``, the site's 1m by default), someone flushes the firewall (a
    command, or a function of the job's ``address``; ``check`` looks at it once the agent had
    its poll), the job downloads again: (bytes ``counter`` counted before the flush, at the
    end)."""
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
        *python_job(TWICE, url or sandbox.url("1m")),
    )
    agent = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert sandbox.read_line(agent.stdout).startswith("first")
        time.sleep(0.3)  # a poll or two: the first download is counted
        before = read_update_ad(update)[counter]
        if callable(flush):
            flush(read_update_ad(update)[address])
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
    return before, read_update_ad(update)[counter]
