"""Lark under a simulated HTCondor starter (tests/helpers/starter.py): the wrapper is born in
the job's cgroups, the agent takes itself out of them and leaves the job in, and whatever
the starter does to the job's family (finish, suspend, cgroup.kill, SIGKILL of each pid,
the OOM killer, the soft-kill signal) the agent keeps counting and cleans up (issue 18)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from helpers.agent import read_update_ad
from helpers.starter import AGENTS, OOM_SCORE_ADJ, Starter, may_lower_oom_scores, proc_cgroup
from helpers.wrap import starter as scratch_with_ads
from sandbox import FILE_SIZES, wait_for

INTERVAL_S = 0.3
CONFIG = f"LARK_ACCOUNTING_INTERVAL = {INTERVAL_S}\n"
BRIDGE_CONFIG = CONFIG + 'LarkNetworkType = "bridge"\nLARK_BRIDGE_DEVICE = uplink\n'
ADS = {".job.ad": "ClusterId = 18\nProcId = 0\n", ".machine.ad": 'Name = "slot1_1@node"\n'}
FETCH = (
    "import sys, urllib.request\n"
    "print(len(urllib.request.urlopen(sys.argv[1], timeout=10).read()))\n"
)
# Pieces of the job (/bin/sh -c SCRIPT job FETCH URL, in its scratch directory): what it
# records of itself, a fetch, and a wait for the test's go-ahead.
RECORD = "cat /proc/self/cgroup > job.cgroup; cat /proc/self/oom_score_adj > job.oom; "
FETCHES = '/usr/bin/python3 -I -c "$1" "$2" > fetched || exit 99; '
READY = "touch ready; "
WAIT_GO = "while [ ! -e go ]; do sleep 0.05; done; "
CHARGED_MAX = 4 << 20  # the job's own; without the agent's second image it held 17 MB
SIGNALS = ("TERM", "QUIT", "INT", "HUP", "USR1", "USR2")
TRAPS = "".join(f'trap "kill \\$!; echo {s} > got; sleep 7; exit 42" {s}; ' for s in SIGNALS)


@pytest.fixture
def starter(sandbox, request):
    made = Starter(sandbox, getattr(request, "param", "flat"))
    try:
        yield made
    finally:
        strays = made.cleanup()
    assert not strays, f"cgroups under the starter's that are not its own: {strays}"


def start_job(sandbox, host, starter, script: str, url: str = "", config: str = CONFIG):
    scratch, env = scratch_with_ads(sandbox, ADS)
    job = ("/bin/sh", "-c", script, "job", FETCH, url)
    starter.start(host, env, *job, cwd=scratch, config=config)
    return scratch


def log_tail(sandbox) -> str:
    log = sandbox.log_file
    return log.read_text()[-3000:] if log.exists() else "(no agent log)"


def wait_ready(sandbox, starter, scratch: Path, timeout: float = 30) -> None:
    """Until the job has touched ``ready``; fails at once, with the agent's words, if the
    agent exits first."""
    end = time.monotonic() + timeout
    while not (scratch / "ready").exists():
        if starter.agent.poll() is not None or time.monotonic() > end:
            _, err = starter.agent.communicate(timeout=30)
            raise AssertionError(
                f"the job never got ready (agent {starter.agent.returncode}): {err}\n"
                f"log: {log_tail(sandbox)}"
            )
        time.sleep(0.05)


def check_family(sandbox, starter, scratch: Path) -> None:
    """The job ran in the starter's job cgroup (or below it) in every hierarchy; the agent,
    still running, is in none of the job's."""
    assert starter.holds((scratch / "job.cgroup").read_text()) == []
    agent = (Path(f"/proc/{starter.agent.pid}/cgroup")).read_text()
    assert starter.inside(agent) == [], f"the agent stayed in the job's cgroup\n{log_tail(sandbox)}"


def update_ad(scratch: Path) -> dict:
    return read_update_ad(scratch / ".lark.update.ad")


def ad_says(scratch: Path, key: str, value, timeout: float = 3.0) -> bool:
    def says() -> bool:
        try:
            return update_ad(scratch).get(key) == value
        except (OSError, ValueError):  # (not written yet)
            return False

    return wait_for(says, timeout)


def finished(sandbox, starter, timeout: float) -> int:
    status, _, err = starter.wait(timeout)
    assert "cleaned up" in sandbox.log_file.read_text(), err
    return status


@pytest.mark.parametrize("starter", ["flat", "scope"], indirect=True)
def test_a_job_finishes_in_the_starters_cgroup_and_the_agent_outside_it(sandbox, host, starter):
    scratch = start_job(
        sandbox, host, starter, RECORD + FETCHES + READY + WAIT_GO + "exit 7", sandbox.url("3m")
    )
    wait_ready(sandbox, starter, scratch)
    check_family(sandbox, starter, scratch)
    charged = starter.memory()  # the job is a waiting shell; the agent's ~20 MB are elsewhere
    assert charged is None or charged < CHARGED_MAX, f"{charged} bytes charged to the job"
    agent = proc_cgroup(starter.agent.pid)
    for key in starter.agent_keys():  # LARK_AGENT_CGROUP's default: ../lark.agents
        assert agent[key] == f"{starter.top[key]}/{AGENTS}", (key, agent[key])
    agent_score = Path(f"/proc/{starter.agent.pid}/oom_score_adj").read_text().strip()
    if may_lower_oom_scores():
        assert agent_score == "-1000"
    else:  # (no CAP_SYS_RESOURCE here: the agent says so, once, and keeps the starter's)
        said = [line for line in sandbox.log_file.read_text().splitlines() if "OOM" in line]
        assert len(said) == 1, log_tail(sandbox)
        assert agent_score == str(OOM_SCORE_ADJ)
    assert (scratch / "job.oom").read_text().strip() == str(OOM_SCORE_ADJ)  # the starter's
    (scratch / "go").touch()
    assert finished(sandbox, starter, 30) == 7
    assert (scratch / "fetched").read_text().strip() == str(FILE_SIZES["3m"])
    ad = update_ad(scratch)
    assert ad["NetworkIncoming"] >= FILE_SIZES["3m"]
    assert ad["LarkJobSuspended"] is False
    assert sandbox.wait_clean() == []


def test_a_suspended_job_is_still_counted_and_published_as_suspended(sandbox, host, starter):
    scratch = start_job(
        sandbox, host, starter, RECORD + FETCHES + READY + WAIT_GO, sandbox.url("1m")
    )
    wait_ready(sandbox, starter, scratch)
    check_family(sandbox, starter, scratch)
    assert ad_says(scratch, "LarkJobSuspended", False)
    ad_file = scratch / ".lark.update.ad"
    with starter.suspended():
        started = time.monotonic()
        assert ad_says(scratch, "LarkJobSuspended", True), log_tail(sandbox)
        before = ad_file.stat().st_mtime_ns
        time.sleep(3)
        assert ad_file.stat().st_mtime_ns > before, "no update ad written while suspended"
        assert update_ad(scratch)["LarkJobSuspended"] is True
        assert starter.frozen()
        time.sleep(max(0.0, 10 - (time.monotonic() - started)))
        assert update_ad(scratch)["LarkJobSuspended"] is True
        check_family(sandbox, starter, scratch)
    assert ad_says(scratch, "LarkJobSuspended", False), update_ad(scratch)
    (scratch / "go").touch()
    assert finished(sandbox, starter, 30) == 0
    ad = update_ad(scratch)
    assert ad["LarkJobSuspended"] is False and ad["NetworkIncoming"] >= FILE_SIZES["1m"]
    assert sandbox.wait_clean() == []


def test_a_suspended_bridged_jobs_lease_is_renewed(sandbox, host, starter):
    from sandbox import start_kea

    kea_log, _ = start_kea(sandbox, lifetime=4)
    sandbox.kept_links.add("lark")

    def allocations() -> int:
        return kea_log.read_text().count("DHCP4_LEASE_ALLOC")

    scratch = start_job(
        sandbox,
        host,
        starter,
        RECORD + READY + WAIT_GO + FETCHES,
        sandbox.url("1k"),
        config=BRIDGE_CONFIG,
    )
    wait_ready(sandbox, starter, scratch)
    check_family(sandbox, starter, scratch)
    assert ad_says(scratch, "LarkDHCPState", "bound", 10), log_tail(sandbox)
    address = update_ad(scratch)["LarkInnerAddressIPv4"]
    with starter.suspended():
        allocated, renewed = allocations(), update_ad(scratch)["LarkDHCPRenewals"]
        time.sleep(10)  # 2.5 lifetimes: only renewals keep the address
        during = update_ad(scratch)
        assert allocations() >= allocated + 2, kea_log.read_text()[-2000:]
        assert during["LarkDHCPRenewals"] >= renewed + 2, during
        assert during["LarkDHCPState"] == "bound" and during["LarkInnerAddressIPv4"] == address
        assert during["LarkJobSuspended"] is True
    (scratch / "go").touch()  # the job fetches from the site with its address
    assert finished(sandbox, starter, 30) == 0, log_tail(sandbox)
    assert (scratch / "fetched").read_text().strip() == str(FILE_SIZES["1k"])
    assert update_ad(scratch)["LarkInnerAddressIPv4"] == address
    assert sandbox.wait_clean() == []


@pytest.mark.parametrize(
    ("how", "starter"),
    [("cgroup.kill", "flat"), ("cgroup.kill", "scope"), ("SIGKILL of each pid", "flat")],
    indirect=["starter"],
)
def test_a_killed_family_is_counted_and_gone_within_3_s(sandbox, host, starter, how):
    """HTCondor's kill_family, with cgroup.kill (Linux 5.14+) and without (EL9: SIGKILL to
    every pid of the cgroup tree): the agent, outside the family, sees its job die, writes
    the final counts and tears down."""
    scratch = start_job(
        sandbox, host, starter, RECORD + FETCHES + READY + "exec sleep 600", sandbox.url("3m")
    )
    wait_ready(sandbox, starter, scratch)
    check_family(sandbox, starter, scratch)
    killed_at = time.time()
    started = time.monotonic()
    if how == "cgroup.kill":
        starter.cgroup_kill()
    else:
        starter.kill_procs()
    status = finished(sandbox, starter, 3)
    left = sandbox.wait_clean(max(0.0, 3 - (time.monotonic() - started)))
    assert left == [] and time.monotonic() - started < 3, left
    assert status == 128 + signal.SIGKILL
    assert starter.job_pids() == set()
    ad_file = scratch / ".lark.update.ad"
    assert ad_file.stat().st_mtime >= killed_at  # the final write, after the kill
    assert update_ad(scratch)["NetworkIncoming"] >= FILE_SIZES["3m"]


def test_an_oom_killed_job_is_counted_and_torn_down(sandbox, host, starter):
    where = starter.limit_memory(96 << 20)
    if where is None:
        pytest.skip("no writable memory controller (v2 memory.max or v1 memory cgroup)")
    hog = "b = []\nwhile True: b.append(b'x' * (8 << 20))\n"
    scratch = start_job(
        sandbox,
        host,
        starter,
        RECORD + FETCHES + READY + WAIT_GO + f'exec /usr/bin/python3 -I -c "{hog}"',
        sandbox.url("1m"),
    )
    wait_ready(sandbox, starter, scratch)
    check_family(sandbox, starter, scratch)
    oomed_at = time.time()
    (scratch / "go").touch()
    status = finished(sandbox, starter, 30)
    assert status == 128 + signal.SIGKILL, log_tail(sandbox)
    assert starter.oom_kills() >= 1, f"no OOM kill counted in the job's cgroup ({where})"
    ad_file = scratch / ".lark.update.ad"
    assert ad_file.stat().st_mtime >= oomed_at
    assert update_ad(scratch)["NetworkIncoming"] >= FILE_SIZES["1m"]
    assert sandbox.wait_clean() == []


@pytest.mark.parametrize("name", SIGNALS)
def test_the_soft_kill_signal_reaches_the_job_which_may_take_its_time(sandbox, host, starter, name):
    """The starter's KillSig goes to the wrapper; the job gets exactly that signal and may
    take longer than 5 s to finish (the hard kill is the starter's, after MaxVacateTime)."""
    scratch = start_job(sandbox, host, starter, TRAPS + RECORD + READY + "sleep 600 & wait; exit 3")
    wait_ready(sandbox, starter, scratch)
    check_family(sandbox, starter, scratch)
    started = time.monotonic()
    starter.soft_kill(getattr(signal, f"SIG{name}"))
    status = finished(sandbox, starter, 30)
    assert (scratch / "got").read_text().strip() == name
    assert status == 42, f"the job did not finish by itself ({status})\n{log_tail(sandbox)}"
    assert time.monotonic() - started >= 7
    assert sandbox.wait_clean() == []


def test_an_agent_that_cannot_leave_says_so_once_and_works_as_before(sandbox, host, starter):
    """LARK_AGENT_CGROUP inside the job's cgroup is refused: the agent stays, logs one
    warning, and the job runs and is torn down as before issue 18."""
    config = CONFIG + "LARK_AGENT_CGROUP = inside/the/job\n"
    scratch = start_job(sandbox, host, starter, RECORD + READY + WAIT_GO + "exit 3", config=config)
    wait_ready(sandbox, starter, scratch)
    assert starter.holds((scratch / "job.cgroup").read_text()) == []
    agent = proc_cgroup(starter.agent.pid)
    assert starter.inside(Path(f"/proc/{starter.agent.pid}/cgroup").read_text()), agent
    (scratch / "go").touch()
    assert finished(sandbox, starter, 30) == 3
    said = [line for line in sandbox.log_file.read_text().splitlines() if "stays in" in line]
    assert len(said) == 1 and "is inside the job's cgroup" in said[0], said
    assert sandbox.wait_clean() == []


def test_the_starters_cgroups_are_checked_for_leftovers(sandbox, starter):
    """A cgroup left in a v1 hierarchy fails a test like a v2 one."""
    key = starter.v1_freezer or starter.v1_memory
    if key is None:
        pytest.skip("no v1 hierarchy mounted")
    stray = starter.dir(key, f"{starter.top[key]}/{sandbox.prefix}.stray")
    stray.mkdir()
    try:
        assert f"cgroup {stray}" in sandbox.leftovers()
    finally:
        stray.rmdir()
    assert os.path.exists(starter.dir(key))
