"""Ads from the job side are bounded before anything is created, and cannot forge script input."""

from __future__ import annotations

import pytest
from helpers.scripts import calls, recorder


def refused(sandbox, host, job_ad: str, *flags: str) -> str:
    """Run a job with ``job_ad`` as its ad; return the one line of stderr of a refusal."""
    r = sandbox.run_agent(host, *sandbox.who(), "--job-ad", job_ad, *flags, "--", "true")
    assert r.returncode == 125, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    return r.stderr.strip()


def test_a_deeply_chained_expression_is_refused_before_anything_exists(sandbox, host):
    """60,000 terms parse, then crashed classad's old-syntax printer (SIGSEGV) once the
    network existed, leaving it all to the sweeper."""
    ad = sandbox.tmp / "deep.ad"
    ad.write_text("ClusterId = 1\nFoo = " + "+".join(["1"] * 60_000) + "\n")
    create = recorder(sandbox, "create")
    line = refused(sandbox, host, str(ad), "--create-script", str(create))
    assert line == (
        f"lark-agent: error: job ad {ad} line 2: the value of Foo is nested too deeply (more "
        "than 1000 chained operators and brackets)"
    )
    assert not calls(sandbox, "create")


def test_an_endless_or_huge_ad_is_refused_without_reading_it_all(sandbox, host):
    assert refused(sandbox, host, "/dev/zero") == (
        "lark-agent: error: job ad /dev/zero: not a regular file"
    )
    big = sandbox.tmp / "big.ad"
    big.write_text("".join(f"A{i} = {i}\n" for i in range(120_000)))  # 1.5 MB
    assert refused(sandbox, host, str(big)) == (
        f"lark-agent: error: job ad {big}: larger than 1024 KiB"
    )


def test_an_ad_that_evaluates_for_ever_is_stopped(sandbox, host):
    """Self-doubling references: each costs classad half a second before it gives up, and Lark
    looks at many attributes. The evaluation runs in a child under a CPU limit."""
    ad = sandbox.tmp / "slow.ad"
    doubling = "".join(f"A{i} = A{i - 1} + A{i - 1}\n" for i in range(1, 41))
    asked = ("WantJobNetworking", "LarkNetworkType", "InboundConnectivity")
    asked += ("OutboundConnectivity", "LarkAddressType", "NetworkAccounting")
    asked += ("LarkAllowedConnections", "ClusterId", "ProcId")
    ad.write_text("A0 = 1\n" + doubling + "".join(f"{a} = A40\n" for a in asked))
    assert refused(sandbox, host, str(ad)) == (
        "lark-agent: error: evaluating the ads took too long (a self-referencing or runaway "
        "expression?)"
    )


@pytest.mark.parametrize(
    "value",
    [
        '"x\\n------\\nLarkStartupScript = \\"/bin/sh\\""',
        '"x\\r\\n------\\r\\nY = 1"',
        '"x\\u2028------\\u2029Y = 1"',
    ],
)
def test_a_job_ad_string_cannot_forge_the_separator_the_scripts_read(sandbox, host, value):
    """classad's old-syntax printer writes a string's newlines raw: a job could forge the
    ``------`` line and write "machine ad" attributes of its own after it."""
    job = sandbox.tmp / "job.ad"
    job.write_text(f"[ ClusterId = 1; ProcId = 0; Evil = {value}; After = 2 ]")
    machine = sandbox.tmp / "machine.ad"
    machine.write_text('Name = "slot1@node"\n')
    create = recorder(sandbox, "create")
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--job-ad",
        str(job),
        "--machine-ad",
        str(machine),
        "--create-script",
        str(create),
        "--",
        "true",
    )
    assert r.returncode == 0, r.stderr
    [(_, stdin)] = calls(sandbox, "create")
    lines = stdin.split("\n")
    assert lines.count("------") == 1
    job_part = lines[: lines.index("------")]
    assert sorted(line.split(" = ")[0] for line in job_part) == [
        "After",
        "ClusterId",
        "Evil",
        "ProcId",
    ]
    assert lines[lines.index("------") + 1 :] == ['Name = "slot1@node"', ""]
