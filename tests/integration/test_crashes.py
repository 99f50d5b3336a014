"""SIGKILL of the agent at each step of setup and of teardown, then the sweeper."""

from __future__ import annotations

import ipaddress
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.agent import cleanup, killed_after_setup, read_update_ad
from helpers.scripts import script
from sandbox import sh, wait_for

STEPS = ["address", "netns", "firewall", "cgroup", "undo-cgroup", "undo-firewall",
         "undo-processes", "undo-veth", "undo-netns"]  # fmt: skip


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_any_step_leaves_nothing_after_the_sweeper(sandbox, host, step):
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host, *sandbox.who(name), "--", "true", env={"_LARK_TEST_PAUSE_AFTER": step}
    )
    log = sandbox.log_file
    for _ in range(500):
        if log.exists() and f"test pause after {step}" in log.read_text():
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"no pause after {step}: {log.read_text() if log.exists() else ''}")
    agent.send_signal(signal.SIGKILL)
    agent.communicate(timeout=10)
    # the pair it held: its lock file names the job at every step (the address is logged
    # only after the address step's pause)
    locks = sandbox.lock_dir.glob("addr-*.lock")
    [held] = [path for path in locks if path.read_text().split()[1:] == [name]]
    external = ipaddress.IPv4Address(held.name.removeprefix("addr-").removesuffix(".lock"))
    logged = re.search(rf"{name}: addresses (\S+) \(host\) / (\S+) \(job\)", log.read_text())
    if step != "address":
        assert logged and logged.groups() == (str(external), str(external + 1))
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert sandbox.leftovers() == []
    # the pair is free again: a new job of the same name gets it back
    update = sandbox.tmp / "again.ad"
    again = sandbox.run_agent(host, *sandbox.who(name), "--update-ad", str(update), "--", "true")
    assert again.returncode == 0, again.stderr
    assert read_update_ad(update)["LarkInnerAddressIPv4"] == str(external + 1)


def term_pending(pid: int) -> bool:
    """Whether a SIGTERM sent to process ``pid`` is still pending, not yet taken by a handler
    (``ShdPnd`` of /proc/PID/status: the process's shared pending signals, a bit mask)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    raise AssertionError(f"no ShdPnd in /proc/{pid}/status")


def test_sigterm_stops_the_job_then_kills_it_and_a_second_one_does_not_stop_cleanup(sandbox, host):
    """Under ``run`` the agent KILLs the job LARK_KILL_GRACE seconds after a TERM."""
    started, go = sandbox.tmp / "delete-started", sandbox.tmp / "delete-go"
    done = sandbox.tmp / "delete-done"
    delete = script(  # (runs until the test has seen the second TERM taken)
        sandbox,
        "delete",
        f"#!/bin/sh\ntouch {started}\nwhile [ ! -e {go} ]; do sleep 0.02; done\ntouch {done}\n",
    )
    update = sandbox.tmp / "update.ad"
    agent = sandbox.start_agent(
        host,
        *sandbox.who(),
        "--kill-grace",
        "2",
        "--update-ad",
        str(update),
        "--delete-script",
        str(delete),
        "--",
        "/bin/sh",
        "-c",
        "trap '' TERM; echo ready; exec sleep 60",  # a job that ignores TERM
    )
    assert sandbox.read_line(agent.stdout).strip() == "ready"
    t0 = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    try:
        assert wait_for(started.exists, 20), "the delete script never started"
        agent.send_signal(signal.SIGTERM)  # during cleanup: ignored
        assert wait_for(lambda: not term_pending(agent.pid), 5), "the second TERM was not taken"
        assert not done.exists()  # (taken while the delete script ran)
    finally:
        go.touch()
    _, err = agent.communicate(timeout=30)
    assert agent.returncode == 128 + signal.SIGKILL
    assert 1.8 < time.monotonic() - t0 < 2 + 30  # the grace period, then the cleanup budget
    assert done.exists()  # the delete script was not interrupted
    assert "the job outlived 2 s after TERM: killing it" in err
    assert "NetworkIncoming" in read_update_ad(update)  # the final accounting was published


def test_a_full_or_unwritable_state_dir_is_one_line_before_anything_exists(sandbox, host):
    """A record can always be written before any resource exists, or nothing is made."""
    blocked = sandbox.tmp / "not-a-dir"
    blocked.write_text("")
    r = sandbox.run_agent(host, *sandbox.who(), "--state-dir", str(blocked / "s"), "--", "true")
    assert r.returncode == 125
    assert r.stderr.strip().startswith(f"lark-agent: error: create state dir {blocked / 's'}")
    # a disk that takes no more bytes: writes fail (EFBIG, as ENOSPC would) from the first
    argv = sandbox.agent_argv(host, *sandbox.who(), "--log-file", "/dev/null", "--", "true")
    r = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)),
    )
    assert r.returncode == 125, r.stderr
    assert "state record" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("lacks", "mode", "says"),
    [
        ("veth", "nat", "veth links (CONFIG_VETH)"),
        ("nftables", "nat", "nf_tables (CONFIG_NF_TABLES)"),
        ("bridge", "bridge", "bridge links (CONFIG_BRIDGE)"),
        ("netns", "none", "network namespaces (CONFIG_NET_NS)"),
    ],
)
def test_a_kernel_without_a_feature_is_one_line_before_anything_exists(
    sandbox, host, lacks, mode, says
):
    # the agent asks the real kernel about a link kind or nfnetlink subsystem it cannot
    # know (test hook), so the refusal path is the one a kernel without it takes
    r = sandbox.run_agent(
        host,
        *sandbox.who(),
        "--network-type",
        mode,
        "--bridge-device",
        "uplink",
        "--",
        "true",
        env={"_LARK_TEST_KERNEL_LACKS": lacks},
    )
    assert r.returncode == 125
    assert r.stderr.strip() == f"lark-agent: error: this kernel lacks {says}; nothing was created"
    assert sandbox.leftovers() == []
    assert "lark" not in sh("ip", "-o", "link", "show", netns=host.netns).stdout


def test_a_killed_agents_pair_is_not_given_out_until_swept(sandbox, host):
    """Its lock died with it, but its veth and rules still use the pair."""

    pool = ("--local-network", "192.168.181.0/29")  # two pairs
    killed_after_setup(sandbox, host, sandbox.job_name("dead"), *pool)
    log = sandbox.log_file.read_text()
    dead = re.search(r"dead: addresses \S+ \(host\) / (\S+) \(job\)", log).group(1)
    update = sandbox.tmp / "u.ad"
    live = sandbox.start_agent(
        host, *sandbox.who(sandbox.job_name("b")), *pool, "--update-ad", str(update), "--",
        "/bin/sh", "-c", "echo ready; exec sleep 30",
    )  # fmt: skip
    try:
        assert sandbox.read_line(live.stdout).strip() == "ready"
        assert read_update_ad(update)["LarkInnerAddressIPv4"] != dead
        full = sandbox.run_agent(host, *sandbox.who(sandbox.job_name("c")), *pool, "--", "true")
        assert full.returncode == 125 and "is exhausted" in full.stderr
        assert cleanup(sandbox, host).returncode == 0  # the live job stays, the dead one goes
        again = sandbox.run_agent(
            host, *sandbox.who(sandbox.job_name("c")), *pool, "--update-ad", str(update), "--",
            "true",
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert read_update_ad(update)["LarkInnerAddressIPv4"] == dead
    finally:
        live.terminate()
        live.communicate(timeout=30)
