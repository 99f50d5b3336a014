"""The firewall backends a NAT test runs against, and a download around a flushed firewall."""

from __future__ import annotations

import subprocess

from sandbox import FILE_SIZES, sh, wait_for

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
    log = sandbox.log_file
    try:
        assert sandbox.read_line(agent.stdout).startswith("first")

        def counted() -> int:
            return read_update_ad(update).get(counter, 0) if update.exists() else 0

        assert wait_for(lambda: counted() >= FILE_SIZES["1m"], 10), (
            f"the first download was never counted in {counter}: {counted()}"
        )
        before = counted()
        restored = log.read_text().count("restoring it")
        if callable(flush):
            flush(read_update_ad(update)[address])
        else:
            sh(*flush, netns=host.netns)
        # the agent notices at its next poll, puts its rules back, then publishes: an update
        # ad written after the notice comes after the repair
        assert wait_for(lambda: log.read_text().count("restoring it") > restored, 10), (
            "the agent never noticed its damaged firewall"
        )
        written = update.stat().st_mtime_ns
        assert wait_for(lambda: update.stat().st_mtime_ns != written, 10), "no poll after it"
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
