"""lark-agent status: the live jobs of a node, as a person or a script reads them."""

from __future__ import annotations

import json
import subprocess

from helpers.agent import cleanup, killed_after_setup, python_job
from sandbox import sh


def status(sandbox, host, *flags: str):
    argv = sandbox.agent_argv(host, "--state-dir", str(sandbox.state_dir), *flags, verb="status")
    return sh(*argv[2:], netns=host.netns).stdout


def test_status_lists_live_jobs_with_their_bytes(sandbox, host):
    assert "(no jobs)" in status(sandbox, host)
    job = (
        "import sys, time, urllib.request\n"
        "urllib.request.urlopen(sys.argv[1]).read()\nprint('done', flush=True)\ntime.sleep(30)\n"
    )
    agent = sandbox.start_agent(host, *sandbox.who(), "--", *python_job(job, sandbox.url("1m")))
    try:
        assert sandbox.read_line(agent.stdout).strip() == "done"
        [row] = json.loads(status(sandbox, host, "--json"))
        assert row["name"] == sandbox.job_name() and row["mode"] == "nat"
        assert row["address"].startswith("192.168.181.") and row["agent_alive"]
        assert row["bytes_in"] > 1_000_000 and row["bytes_out"] > 0 and row["agent_pid"] > 0
        table = status(sandbox, host).splitlines()
        header = "NAME MODE ADDRESS LEASE ENDS BYTES IN BYTES OUT MBIT/S IN/OUT AGENT AGE"
        assert table[0].split() == header.split(" ")
        assert table[1].startswith(sandbox.job_name())
    finally:
        agent.terminate()
        agent.communicate(timeout=30)


def test_status_says_when_a_jobs_agent_is_gone(sandbox, host):
    """A killed agent's job is still listed (its things are there until a sweep), with the
    agent marked gone; a pid now someone else's (not an agent) is no live agent either."""
    name = sandbox.job_name()
    killed_after_setup(sandbox, host, name)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        for pid in (None, stranger.pid):
            if pid is not None:  # the dead agent's pid, taken by another process
                record = sandbox.state_dir / f"{name}.json"
                data = json.loads(record.read_text())
                data["pid"] = pid
                record.write_text(json.dumps(data))
            [row] = json.loads(status(sandbox, host, "--json"))
            assert row["name"] == name and row["mode"] == "nat", row
            assert row["agent_pid"] > 0 and row["agent_alive"] is False, row
            [line] = status(sandbox, host).splitlines()[1:]
            assert line.startswith(name) and f"{row['agent_pid']} (gone)" in line, line
    finally:
        stranger.kill()
        stranger.wait()
        swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "(no jobs)" in status(sandbox, host)
