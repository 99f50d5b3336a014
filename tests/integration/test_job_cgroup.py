"""A job that forks and exits continuously (a new pid each time) is entirely gone when the
agent says "cleaned up": killed through its cgroup (cgroup.kill, or freeze then SIGKILL),
or, without a usable cgroup v2, through repeated scans of its network namespace."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

import pytest
from helpers.agent import cleanup
from sandbox import (
    SITE_ADDR,
    cgroup_pids,
    cgroup_v2_mounts,
    discard_cgroup,
    job_cgroups,
    wait_for,
)

# Each generation sends a UDP datagram to the site through the job's veth, forks, and exits:
# only one or two pids live at any moment, each for a fraction of a millisecond. Jobs start
# two such chains.
HOP_SCRIPT = (
    f'$s = IO::Socket::INET->new(PeerAddr => "{SITE_ADDR}:9999", Proto => "udp") or die;'
    'while (1) { $s->send("x"); defined($p = fork) or next; exit 0 if $p }'
)
HOP_CMD = f"perl -MIO::Socket::INET -e {shlex.quote(HOP_SCRIPT)}"
HOP = f"{HOP_CMD} </dev/null >/dev/null 2>&1 &"
HOPPER = f"{HOP} {HOP}"

# how the agent is told which way to kill (test hook: pretend the kernel lacks a feature)
METHODS = {
    "cgroup.kill": ({}, "teardown kills it with cgroup.kill"),
    "freeze": (
        {"_LARK_TEST_KERNEL_LACKS": "cgroup.kill"},
        "teardown kills it with cgroup.freeze, then SIGKILL of each process",
    ),
    "namespace scan": (
        {"_LARK_TEST_KERNEL_LACKS": "cgroup2"},
        "no cgroup for the job (cgroup v2 pretended missing by _LARK_TEST_KERNEL_LACKS)",
    ),
}


def netns_id(name: str) -> tuple[int, int]:
    st = os.stat(f"/run/netns/lark-{name}")
    return st.st_dev, st.st_ino


def ns_of(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def inside(ns: tuple[int, int]) -> list[int]:
    """Pids in the job's namespace (by its identity: its name may be gone)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                st = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ns:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def hopping(sandbox, name: str, ns: tuple[int, int], method: str) -> None:
    """The hopper runs, with new pids, in the job's cgroup when it has one."""
    seen: set[int] = set()

    def hopped() -> bool:
        seen.update(inside(ns))
        return len(seen) > 5

    assert wait_for(hopped, 10)
    if method == "namespace scan":
        assert job_cgroups(sandbox.prefix) == []
    else:
        (group,) = job_cgroups(sandbox.prefix)
        assert group.name == f"lark-{name}"
        assert set(cgroup_pids(group)) & set(inside(ns))


def assert_all_gone(sandbox, ns: tuple[int, int]) -> None:
    """Checked the moment the agent has exited: no waiting for stragglers."""
    assert inside(ns) == [], "processes of the job outlived its agent"
    assert job_cgroups(sandbox.prefix) == []
    assert sandbox.wait_clean() == []  # (the kernel deletes the veth after its namespace)


@pytest.mark.parametrize("method", METHODS)
def test_a_pid_hopping_job_is_gone_when_its_main_process_exits(sandbox, host, method):
    env, says = METHODS[method]
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host,
        *sandbox.who(name),
        "--",
        "/bin/sh",
        "-c",
        f"{HOPPER} echo ready; exec sleep 60",
        env=env,
    )
    assert sandbox.read_line(agent.stdout).strip() == "ready"
    ns = netns_id(name)
    hopping(sandbox, name, ns, method)
    (main,) = [pid for pid in inside(ns) if cmdline(pid) == b"sleep\x0060\x00"]
    os.kill(main, signal.SIGKILL)  # the job's main process ends; the hopper goes on
    started = time.monotonic()
    _, err = agent.communicate(timeout=30)
    assert agent.returncode == 128 + signal.SIGKILL, err
    assert time.monotonic() - started < 10
    assert_all_gone(sandbox, ns)
    log = sandbox.log_file.read_text()
    assert says in log and f"{name}: cleaned up" in log


@pytest.mark.parametrize("method", METHODS)
def test_a_pid_hopping_job_is_gone_when_the_agent_gets_term(sandbox, host, method):
    env, says = METHODS[method]
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host,
        *sandbox.who(name),
        "--",
        "/bin/sh",
        "-c",
        f"{HOPPER} echo ready; exec sleep 60",
        env=env,
    )
    assert sandbox.read_line(agent.stdout).strip() == "ready"
    ns = netns_id(name)
    hopping(sandbox, name, ns, method)
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=30)
    assert agent.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - started < 10
    assert_all_gone(sandbox, ns)
    log = sandbox.log_file.read_text()
    assert says in log and f"{name}: cleaned up" in log


@pytest.mark.parametrize("record", ["kept", "lost"])
def test_a_killed_agents_pid_hopping_job_is_killed_by_cleanup_orphans(sandbox, host, record):
    """The record names the cgroup; without the record the sweeper finds it by its name."""
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host, *sandbox.who(name), "--", "/bin/sh", "-c", f"{HOPPER} echo ready; exec sleep 60"
    )
    assert sandbox.read_line(agent.stdout).strip() == "ready"
    ns = netns_id(name)
    hopping(sandbox, name, ns, "cgroup.kill")
    (group,) = job_cgroups(sandbox.prefix)
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)  # (the job keeps the agent's stdout open)
    agent.stdout.close()
    agent.stderr.close()
    if record == "lost":
        (sandbox.state_dir / f"{name}.json").unlink()
        listed = cleanup(sandbox, host, "--dry-run")
        assert f"orphan cgroup {group}" in listed.stdout, listed.stdout
    assert inside(ns)  # the job outlived its agent
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert_all_gone(sandbox, ns)
    assert cleanup(sandbox, host).stdout.strip() == "no orphans"


def test_a_job_that_leaves_its_cgroup_is_still_killed_through_its_namespace(sandbox, host):
    """HTCondor hands a job's cgroup to the job's user; an agent run inside such a cgroup
    makes the job's below it, and the job can move itself up and out (it may write the
    common ancestor's cgroup.procs). The namespace scan after the cgroup kill gets it."""
    (mount,) = cgroup_v2_mounts()[:1]
    home = mount / f"{sandbox.prefix}-agent"  # (not a job cgroup's name)
    home.mkdir()
    sandbox.own_cgroups.add(home)  # (while the test runs; after it, a leftover like any)
    try:
        for path in (home, home / "cgroup.procs"):
            os.chown(path, 65534, 65534)  # nobody's, as HTCondor's cgroupify_myself does
        name = sandbox.job_name()
        inner = f"echo $$ > {home}/cgroup.procs && exec {HOP_CMD}"
        escape = f"sh -c {shlex.quote(inner)} </dev/null >/dev/null 2>&1 &"
        argv = sandbox.agent_argv(
            host,
            *sandbox.who(name),
            "--",
            "/bin/sh",
            "-c",
            f"{escape} {escape} echo ready; exec sleep 60",
        )
        agent = subprocess.Popen(
            ["/bin/sh", "-c", f'echo $$ > {home}/cgroup.procs && exec "$@"', "sh", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = sandbox.read_line(agent.stdout)
        assert line.strip() == "ready", line + agent.stderr.read()
        ns = netns_id(name)
        hopping(sandbox, name, ns, "cgroup.kill")
        # it left: a pid of the agent's cgroup is in the job's namespace (each looked at the
        # moment it is listed; a scan of all /proc is slower than the hopper's pids live)
        assert wait_for(lambda: any(ns_of(pid) == ns for pid in cgroup_pids(home)))
        (main,) = [pid for pid in inside(ns) if cmdline(pid) == b"sleep\x0060\x00"]
        os.kill(main, signal.SIGKILL)
        _, err = agent.communicate(timeout=30)
        assert agent.returncode == 128 + signal.SIGKILL, err
        assert_all_gone(sandbox, ns)
        assert cgroup_pids(home) == []
        assert f"{name}: cleaned up" in sandbox.log_file.read_text()
    finally:  # (after a failure: the job's cgroup is in the way of ours)
        discard_cgroup(home)  # (and the job's below it)
        sandbox.own_cgroups.discard(home)
