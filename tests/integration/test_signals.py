"""Signals to ``lark-agent run``: forwarded to the job while it runs; during setup, one line,
128+N and nothing left (TERM and HUP: test_nat.py; under ``wrap``: test_starter.py)."""

from __future__ import annotations

import signal

import pytest

# /bin/sh: a signal ignored when the shell starts cannot be trapped, so the trap also
# catches a job started with the signal ignored
TRAPPED = 'trap "echo got-{name}; exit 42" {name}; echo ready; sleep 30 & wait'


@pytest.mark.parametrize("name", ["INT", "QUIT", "USR1", "USR2"])
def test_a_signal_to_the_agent_reaches_the_running_job(sandbox, host, name):
    signum = getattr(signal, f"SIG{name}")
    agent = sandbox.start_agent(
        host, *sandbox.who(), "--", "/bin/sh", "-c", TRAPPED.format(name=name)
    )
    try:
        assert sandbox.read_line(agent.stdout).strip() == "ready"
        agent.send_signal(signum)
        out, err = agent.communicate(timeout=20)
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.communicate(timeout=30)
    assert out.split() == [f"got-{name}"], err
    assert agent.returncode == 42, err  # the job's own status: it was not KILLed


def test_int_during_setup_exits_130_with_one_line_and_leaves_nothing(sandbox, host):
    err_file = sandbox.tmp / "wrapper.err"
    env = {"_LARK_TEST_PAUSE_AFTER": "firewall", "_CONDOR_WRAPPER_ERROR_FILE": str(err_file)}
    agent = sandbox.start_agent(host, *sandbox.who(), "--", "/bin/echo", "job ran", env=env)
    try:
        assert "test pause after firewall" in sandbox.read_line(agent.stderr)
        assert sandbox.leftovers()  # (its namespace, veth, chain, ... are there)
        agent.send_signal(signal.SIGINT)
        out, err = agent.communicate(timeout=20)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate(timeout=30)
    assert agent.returncode == 130 == 128 + signal.SIGINT, err
    assert err.splitlines() == ["lark-agent: error: interrupted by SIGINT during setup"]
    assert err_file.read_text().splitlines() == ["lark-agent: interrupted by SIGINT during setup"]
    assert out == ""  # the job never ran
    assert not sandbox.wait_clean()
