"""The same NAT checks against each firewall backend: nftables, and iptables in both builds."""

from __future__ import annotations

import re
import subprocess

import pytest
from helpers.agent import python_job, read_update_ad, run_fetch
from helpers.firewall import BACKENDS, fetch_around_a_flush
from helpers.scripts import contrib_script, script
from sandbox import FILE_SIZES, SITE_ADDR, iptables_job_objects, sh, wait_for


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> tuple[str, ...]:
    return BACKENDS[request.param]


def test_download_counted_and_nothing_left(sandbox, host, backend):
    r, update = run_fetch(sandbox, host, "1m", *backend)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(FILE_SIZES["1m"])
    ad = read_update_ad(update)
    assert FILE_SIZES["1m"] <= ad["NetworkIncoming"] <= FILE_SIZES["1m"] * 1.06
    assert 0 < ad["NetworkOutgoing"] < FILE_SIZES["1m"] * 0.05
    assert ad["LarkIptableName"] == f"LARK_{sandbox.job_name()}"


def test_an_admin_rule_in_the_jobs_chain_is_counted(sandbox, host, backend):
    if backend[1] == "nftables":
        rule = (
            f'nft add rule inet lark "$3" iifname "$4" ip daddr {SITE_ADDR} counter '
            "comment '\"OutgoingSite\"'"
        )
    else:  # the original contract: iptables -A "$3" ...
        rule = (
            f'"$LARK_IPTABLES" -w -A "$3" -i "$4" -d {SITE_ADDR} -m comment --comment OutgoingSite'
        )
    create = script(sandbox, "create", f"#!/bin/sh\nset -e\n{rule}\n")
    r, update = run_fetch(sandbox, host, "1m", *backend, "--create-script", str(create))
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    assert 0 < ad["NetworkOutgoingSite"] == ad["NetworkOutgoing"]


def test_contrib_split_accounting(sandbox, host, backend):
    split = contrib_script(sandbox, "lark-split-accounting", "INTERNAL", f"{SITE_ADDR}/32")
    r, update = run_fetch(sandbox, host, "1m", *backend, "--create-script", str(split))
    assert r.returncode == 0, r.stderr
    ad = read_update_ad(update)
    assert ad["NetworkIncomingInternal"] == ad["NetworkIncoming"] >= FILE_SIZES["1m"]


SPOOF = (
    "import socket, subprocess, sys\n"
    "subprocess.run(['ip', 'addr', 'add', '192.168.181.250/32', 'dev', sys.argv[2]], check=True)\n"
    "s = socket.socket(); s.settimeout(1)\n"
    "s.bind(('192.168.181.250', 0))\n"
    "try:\n"
    "    s.connect((sys.argv[1], 8080)); print('connected')\n"
    "except OSError:\n"
    "    print('blocked')\n"
)


def test_a_job_cannot_send_from_another_address(sandbox, host, backend):
    name = sandbox.job_name()
    r = sandbox.run_agent(
        host,
        "--user",
        "root",
        "--allow-root",
        "--name",
        name,
        *backend,
        "--",
        *python_job(SPOOF, SITE_ADDR, f"i_{name}"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "blocked"


FETCH_AND_WAIT = (
    "import sys, urllib.request\n"
    "urllib.request.urlopen(sys.argv[1]).read()\n"
    "print('fetched', flush=True)\n"
    "sys.stdin.readline()\n"
)
# a counter rule as nft lists it, and as ``iptables -L -v -x -n`` does: packets, bytes, comment
NFT_COUNTER = re.compile(r'counter packets (\d+) bytes (\d+) comment "(Outgoing|Incoming)"')
IPT_COUNTER = re.compile(r"^\s*(\d+)\s+(\d+)\s.*/\* (Outgoing|Incoming) \*/", re.M)


def test_dump_firewall_shows_the_jobs_chain_with_counters(sandbox, host, backend):
    """After a download, with the job still running and its counts settled, the dump shows
    the job's chain and its Outgoing and Incoming rules with the packets and bytes the update
    ad publishes."""
    update = sandbox.tmp / "u.ad"
    agent = sandbox.start_agent(
        host, *sandbox.who(), *backend, "--update-ad", str(update),
        "--accounting-interval", "0.1", "--", *python_job(FETCH_AND_WAIT, sandbox.url("1m")),
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert sandbox.read_line(agent.stdout).strip() == "fetched"
        chain = f"LARK_{sandbox.job_name()}"
        settled: list[tuple[int, int]] = []

        def counts_settled() -> bool:  # the same counts in two update ads in a row
            written = update.stat().st_mtime_ns
            ad = read_update_ad(update)
            counts = (ad["NetworkOutgoing"], ad["NetworkIncoming"])
            if not wait_for(lambda: update.stat().st_mtime_ns != written, 5):
                raise AssertionError("the update ad is no longer refreshed")
            settled[:] = [counts]
            ad = read_update_ad(update)
            return counts == (ad["NetworkOutgoing"], ad["NetworkIncoming"])

        assert wait_for(counts_settled, 20), f"the counts never settled: {settled}"
        out = sh(
            *sandbox.agent_argv(host, verb="dump-firewall")[2:], *backend[2:], netns=host.netns
        ).stdout
        assert f"chain {chain} " in out or f"Chain {chain} " in out, out
        pattern = NFT_COUNTER if backend[1] == "nftables" else IPT_COUNTER
        found = {comment: (int(n), int(b)) for n, b, comment in pattern.findall(out)}
        assert len(pattern.findall(out)) == 2, out  # one Outgoing and one Incoming rule
        outgoing, incoming = settled[0]
        assert found["Outgoing"][1] == outgoing and found["Incoming"][1] == incoming, out
        assert incoming > FILE_SIZES["1m"] and found["Incoming"][0] > 0 < found["Outgoing"][0]
        if backend[1] == "iptables":
            assert "MASQUERADE" in out
            assert iptables_job_objects(host.netns)
    finally:
        if agent.poll() is None:
            sandbox.release(agent)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err


def test_a_flushed_firewall_is_restored_and_counting_carries_on(sandbox, host, backend):
    flush = ("nft", "flush", "ruleset") if backend[1] == "nftables" else (backend[3], "-w", "-F")
    before, final = fetch_around_a_flush(sandbox, host, backend, flush)
    assert before >= FILE_SIZES["1m"] and 2 * FILE_SIZES["1m"] <= final <= 2.12 * FILE_SIZES["1m"]


def test_a_nat_source_removed_from_outside_is_restored(sandbox, host, backend):
    """Only the job's masquerade goes (a sweeper, an admin): its traffic would get no answer;
    the agent puts it back at its next poll and the job's download works again."""
    chain = f"LARK_{sandbox.job_name()}"

    def unmasquerade(address: str) -> None:
        if backend[1] == "nftables":
            drop = ("nft", "delete", "element", "inet", "lark", "nat_sources", f"{{ {address} }}")
        else:
            rule = f"-s {address}/32 ! -o e_+ -m comment --comment {chain} -j MASQUERADE"
            drop = (backend[3], "-w", "-t", "nat", "-D", "POSTROUTING", *rule.split())
        sh(*drop, netns=host.netns)

    before, final = fetch_around_a_flush(sandbox, host, backend, unmasquerade)
    assert before >= FILE_SIZES["1m"] and 2 * FILE_SIZES["1m"] <= final <= 2.12 * FILE_SIZES["1m"]
    assert "NAT source" in sandbox.log_file.read_text()


def test_an_emptied_job_chain_is_refilled_and_counting_carries_on(sandbox, host, backend):
    """Only the job's chain is flushed (its jumps, map element and NAT stay): its counting
    rules and the rules that close the node to the job come back at the next poll."""
    chain = f"LARK_{sandbox.job_name()}"
    if backend[1] == "nftables":
        flush = ("nft", "flush", "chain", "inet", "lark", chain)
        listing = ("nft", "list", "chain", "inet", "lark", chain)
        said = f"the job's firewall chain {chain} is gone or empty"
    else:
        flush = (backend[3], "-w", "-F", chain)
        listing = (backend[3], "-w", "-S", chain)
        said = f"its chain {chain} was emptied"

    def refilled() -> None:
        rules = sh(*listing, netns=host.netns).stdout
        assert "Outgoing" in rules and "Incoming" in rules, rules
        assert "drop" in rules.lower(), rules

    before, final = fetch_around_a_flush(sandbox, host, backend, flush, refilled)
    assert before >= FILE_SIZES["1m"] and 2 * FILE_SIZES["1m"] <= final <= 2.12 * FILE_SIZES["1m"]
    assert said in sandbox.log_file.read_text()
