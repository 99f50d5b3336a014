"""Chirp from the hostile side: the job writes the config the root agent would follow.

A fake starter chirp server runs in the execute host's namespace on 127.0.0.1 as
root, named ``condor_starter`` (what HTCondor's io_proxy.cpp listens as); it
records every connection, so "no connection made" is checked where it would
show.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from helpers.agent import NOBODY, python_job
from helpers.chirp import COOKIE, job_scratch, start_fake_starter
from sandbox import wait_for


def chirp_warnings(sandbox) -> list[str]:
    return [line for line in sandbox.log_file.read_text().splitlines() if "chirp" in line]


def run_short_job(sandbox, host, scratch: Path, env: dict | None = None):
    return sandbox.run_agent(
        host, *sandbox.who(), "--accounting-interval", "0.1", "--", "sleep", "0.6",
        env={"_CONDOR_SCRATCH_DIR": str(scratch), **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("who", ["node service", "unprivileged condor_starter", "not loopback"])
def test_chirp_never_reaches_a_listener_that_is_not_the_starters(sandbox, host, who):
    """A node service on 127.0.0.1 (the job cannot reach it from its namespace; the agent
    could, as root, and would hand it the job's 'cookie'): no connection is made."""
    if who == "node service":
        port, record = start_fake_starter(sandbox, host, name="nodesvc")
        host_text = "127.0.0.1"
    elif who == "unprivileged condor_starter":
        port, record = start_fake_starter(sandbox, host, mode="unprivileged")
        host_text = "127.0.0.1"
    else:  # the real starter's name and owner, but not on loopback
        port, record = start_fake_starter(sandbox, host, bind="0.0.0.0")
        host_text = host.address
    scratch = job_scratch(sandbox, f"{host_text} {port} {COOKIE}\n")
    r = run_short_job(sandbox, host, scratch)
    assert r.returncode == 0, r.stderr
    assert record.read_text() == ""  # no connection, no cookie
    warned = chirp_warnings(sandbox)
    assert len(warned) == 1 and "chirp not used" in warned[0], warned
    assert "Traceback" not in r.stderr
    # the update ad is written all the same
    assert "NetworkIncoming" in (scratch / ".lark.update.ad").read_text()


HOSTILE_FILES = ["symlink", "fifo", "huge", "garbage", "extra words", "root only", "dev zero"]


@pytest.mark.parametrize("kind", HOSTILE_FILES)
def test_a_hostile_chirp_config_is_refused_in_one_line_without_a_connection(sandbox, host, kind):
    port, record = start_fake_starter(sandbox, host)
    good = f"127.0.0.1 {port} {COOKIE}\n"
    scratch = job_scratch(sandbox)
    config = scratch / ".chirp.config"
    env = {}
    if kind == "symlink":  # the job points the name at a file of its choice
        target = scratch / "elsewhere"
        target.write_text(good)
        os.chown(target, NOBODY, NOBODY)
        config.symlink_to(target)
        os.chown(config, NOBODY, NOBODY, follow_symlinks=False)
    elif kind == "fifo":  # a read that would block the agent forever
        os.mkfifo(config)
        os.chown(config, NOBODY, NOBODY)
    elif kind == "huge":
        config.write_text(good + "#" * 10_000_000)
        os.chown(config, NOBODY, NOBODY)
    elif kind == "garbage":
        config.write_bytes(b"\x00\xff 127.0.0.1 \n" * 3)
        os.chown(config, NOBODY, NOBODY)
    elif kind == "extra words":
        config.write_text(f"127.0.0.1 {port} {COOKIE} more\n")
        os.chown(config, NOBODY, NOBODY)
    elif kind == "root only":  # readable by root, not by the job user: not the job's to name
        config.write_text(good)
        config.chmod(0o600)
    else:
        env["_CONDOR_CHIRP_CONFIG"] = "/dev/zero"
    r = run_short_job(sandbox, host, scratch, env)
    assert r.returncode == 0, r.stderr
    assert record.read_text() == ""
    warned = chirp_warnings(sandbox)
    assert len(warned) == 1 and "chirp not used" in warned[0], warned
    assert "Traceback" not in r.stderr


SWAPPING_JOB = r"""
import sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(sys.argv[2])
print("swapped", flush=True)
time.sleep(1.0)
"""


def test_the_chirp_config_is_read_once_a_swap_after_the_start_is_ignored(sandbox, host):
    port, record = start_fake_starter(sandbox, host)
    other_port, other = start_fake_starter(sandbox, host, name="nodesvc")
    scratch = job_scratch(sandbox, f"127.0.0.1 {port} {COOKIE}\n")
    r = sandbox.run_agent(
        host, *sandbox.who(), "--accounting-interval", "0.1", "--",
        *python_job(
            SWAPPING_JOB, str(scratch / ".chirp.config"), f"127.0.0.1 {other_port} {COOKIE}\n"
        ),
        env={"_CONDOR_SCRATCH_DIR": str(scratch)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "swapped\n"
    assert other.read_text() == ""
    seen = record.read_text().splitlines()
    assert seen.count("connect") >= 3 and f"cookie {COOKIE}" in seen
    assert any(line.startswith("attr NetworkIncoming = ") for line in seen)


TERM_JOB = r"""
import signal, sys, time
def term(*_):
    print("term", time.monotonic(), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
time.sleep(60)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("mode", ["hangup", "silent"])
def test_a_starter_that_hangs_up_or_never_answers_costs_one_log_line(sandbox, host, mode):
    """The agent stays responsive: no spinning, TERM reaches the job within 1 s, the teardown
    is not held up by chirp, nothing is left."""
    port, record = start_fake_starter(sandbox, host, mode=mode)
    scratch = job_scratch(sandbox, f"127.0.0.1 {port} {COOKIE}\n")
    agent = sandbox.start_agent(
        host, *sandbox.who(), "--accounting-interval", "0.1", "--", *python_job(TERM_JOB),
        env={"_CONDOR_SCRATCH_DIR": str(scratch)},
    )  # fmt: skip
    try:
        assert sandbox.read_line(agent.stdout).strip() == "ready"
        assert wait_for(lambda: record.read_text().count("connect") >= 1, 10)
        before, start = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(1.0)  # a window to measure the agent's CPU in, not a wait for an event
        busy = (cpu_seconds(agent.pid) - before) / (time.monotonic() - start)
        assert busy < 0.5, f"the agent used {busy:.0%} of a CPU while chirp failed"
        sent = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        line = sandbox.read_line(agent.stdout, timeout=5)
        assert line.startswith("term") and float(line.split()[1]) - sent < 1.0, line
        agent.communicate(timeout=10)
        assert time.monotonic() - sent < 3.0  # the teardown did not wait for chirp
    finally:
        if agent.poll() is None:  # (its job may hold the pipes: the sandbox stops it)
            agent.kill()
            agent.wait()
    assert agent.returncode == 0
    warned = [line for line in chirp_warnings(sandbox) if "cannot push" in line]
    assert len(warned) <= 1, warned
    if mode == "hangup":
        assert warned and "closed the connection" in warned[0]
    assert "Traceback" not in sandbox.log_file.read_text()


JOB_CHIRPS = r"""
import os, socket
config = os.path.join(os.environ["_CONDOR_SCRATCH_DIR"], ".chirp.config")
host, port, cookie = open(config).read().split()
try:
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rwb", buffering=0)
        f.write(f"cookie {cookie}\n".encode())
        print("cookie", f.readline().decode().strip())
        f.write(b"set_job_attr_delayed JobProgress 42\n")
        print("set", f.readline().decode().strip())
except OSError as exc:
    print("unreachable", exc.errno)
"""


@pytest.mark.parametrize("network", ["nat", "none"])
def test_the_job_reaches_the_starters_chirp_server_at_the_address_in_its_config(
    sandbox, host, network
):
    """condor_chirp in the job talks to 127.0.0.1:PORT as .chirp.config says: inside the
    job's namespace the agent listens there and relays to the starter's server."""
    port, record = start_fake_starter(sandbox, host)
    scratch = job_scratch(sandbox, f"127.0.0.1 {port} {COOKIE}\n")
    r = sandbox.run_agent(
        host, *sandbox.who(), "--network-type", network, "--", *python_job(JOB_CHIRPS),
        env={"_CONDOR_SCRATCH_DIR": str(scratch)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["cookie 0", "set 0"], r.stdout
    assert "attr JobProgress = 42" in record.read_text()
    ad = (scratch / ".lark.update.ad").read_text()
    assert "NetworkRelayedOutgoing" in ad


def test_a_config_naming_another_node_service_gets_no_relay(sandbox, host):
    """The agent relays only the starter's own server: a job's config naming some other
    node loopback service reaches nothing."""
    port, record = start_fake_starter(sandbox, host, name="nodesvc")
    scratch = job_scratch(sandbox, f"127.0.0.1 {port} {COOKIE}\n")
    r = sandbox.run_agent(
        host, *sandbox.who(), "--", *python_job(JOB_CHIRPS),
        env={"_CONDOR_SCRATCH_DIR": str(scratch)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("unreachable"), r.stdout
    assert record.read_text() == ""
