"""cleanup --orphans: everything of a dead agent goes, a live job is never touched."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers.agent import cleanup, cleanup_named, killed_after_setup, python_job
from sandbox import netns_list, sh, wait_for


def test_orphans_go_and_live_jobs_stay(sandbox, host):
    live = sandbox.start_agent(host, *sandbox.who(sandbox.job_name("live")), "--", "sleep", "60")
    try:
        killed_after_setup(sandbox, host, sandbox.job_name("rec"))
        killed_after_setup(sandbox, host, sandbox.job_name("ipt"), "--firewall-backend", "iptables")
        # an agent killed before it could keep its record: only names say whose things these are
        (sandbox.state_dir / f"{sandbox.job_name('ipt')}.json").unlink()
        listed = cleanup(sandbox, host, "--dry-run")
        assert listed.returncode == 0, listed.stderr
        out = listed.stdout
        assert f"orphan record {sandbox.job_name('rec')}" in out
        ipt = sandbox.job_name("ipt")
        for thing in (f"netns lark-{ipt}", f"veth e_{ipt}", f"chain LARK_{ipt}", "orphan lock"):
            assert thing in out, out
        assert sandbox.job_name("live") not in out
        done = cleanup(sandbox, host)
        assert done.returncode == 0, done.stdout + done.stderr
        again = cleanup(sandbox, host)
        assert again.stdout.strip() == "no orphans", again.stdout
        assert live.poll() is None  # the live job still runs, its things untouched
        links = sh("ip", "-o", "link", "show", netns=host.netns).stdout
        assert f"e_{sandbox.job_name('live')}" in links
    finally:
        live.terminate()
        live.communicate(timeout=30)


BUILDS = ("iptables-nft", "iptables-legacy")


@pytest.mark.parametrize("record", ["kept", "lost"])
@pytest.mark.parametrize("build", BUILDS)
def test_a_dead_agents_iptables_job_is_swept_from_its_build(sandbox, host, build, record):
    """The iptables backend in either build: its chain, its jumps and its MASQUERADE rule go,
    from the record or, without one, found by name in every build."""
    name, chain = sandbox.job_name(), f"LARK_{sandbox.job_name()}"
    killed_after_setup(sandbox, host, name, "--firewall-backend", "iptables", "--iptables", build)
    saved = sh(f"{build}-save", netns=host.netns).stdout
    assert f":{chain} " in saved and f"-j {chain}" in saved, saved
    assert f"--comment {chain} -j MASQUERADE" in saved, saved
    if record == "lost":
        (sandbox.state_dir / f"{name}.json").unlink()
        listed = cleanup(sandbox, host, "--dry-run")
        assert f"{build} chain {chain}" in listed.stdout, listed.stdout
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    for each in BUILDS:
        assert chain not in sh(f"{each}-save", netns=host.netns).stdout, each
    again = cleanup(sandbox, host)
    assert again.returncode == 0 and again.stdout.strip() == "no orphans", again.stdout
    assert sandbox.leftovers() == []


@pytest.mark.parametrize("record", ["kept", "lost"])
def test_processes_left_in_a_dead_agents_namespace_go_with_it(sandbox, host, record):
    """Processes in the namespace outside any job cgroup (this test's own): TERM, and KILL
    for one that ignores TERM, before the namespace goes, so none lives on in it unseen."""
    name = sandbox.job_name()
    killed_after_setup(sandbox, host, name)
    inside = ["nsenter", f"--net=/run/netns/lark-{name}"]
    polite = subprocess.Popen([*inside, "sleep", "300"])
    stubborn = subprocess.Popen(
        [*inside, "/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.2; done"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sandbox.read_line(stubborn.stdout).strip() == "ready"
        if record == "lost":
            (sandbox.state_dir / f"{name}.json").unlink()
        swept = cleanup(sandbox, host)
        assert swept.returncode == 0, swept.stdout + swept.stderr
        assert polite.wait(timeout=10) == -signal.SIGTERM
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
    finally:
        for proc in (polite, stubborn):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if stubborn.stdout:
            stubborn.stdout.close()
    assert f"lark-{name}" not in netns_list()
    again = cleanup(sandbox, host)
    assert again.returncode == 0 and again.stdout.strip() == "no orphans", again.stdout


def _foreign(name: str, site: str) -> str:
    """Well-formed JSON naming things that are not Lark's: the host's own uplink and the
    test's site namespace (the test's own, so a sweeper that believes it harms only the test)."""
    steps = {"veth": {"external": "uplink"}, "netns": {"netns": site}}
    return json.dumps({"name": name, "pid": 0, "plan": {}, "steps": steps})


UNREADABLE = {
    "empty": lambda text, box: "",
    "garbage": lambda text, box: "\x00\x7fnot json {",
    "truncated": lambda text, box: text[: len(text) // 2],
    "foreign": lambda text, box: _foreign(box.job_name(), box.site),
}


@pytest.mark.parametrize("verb", ["orphans", "named"])
@pytest.mark.parametrize("damage", list(UNREADABLE))
def test_an_unreadable_record_is_swept_by_name(sandbox, host, damage, verb):
    """An agent killed between creating its record and its first save (or a record damaged
    any other way): the job's things are found by its name, nothing else is touched."""
    name = sandbox.job_name()
    killed_after_setup(sandbox, host, name)
    record = sandbox.state_dir / f"{name}.json"
    record.write_text(UNREADABLE[damage](record.read_text(), sandbox))
    assert sandbox.leftovers()  # the namespace, veth, chain, NAT source, lock, record
    done = cleanup(sandbox, host) if verb == "orphans" else cleanup_named(sandbox, host, name)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"state record {record} is unreadable" in lines[0], done.stderr
    assert sandbox.leftovers() == []
    assert "uplink" in sh("ip", "-o", "link", "show", netns=host.netns).stdout
    assert sandbox.site in netns_list()
    again = sandbox.run_agent(host, *sandbox.who(name), "--", "true")  # the name is usable
    assert again.returncode == 0, again.stderr


LOOP_JOB = (  # a hundred fetches at once overflow the test server's listen backlog: retry
    "import os, random, sys, time, urllib.request\n"
    "def fetch():\n"
    "    for attempt in range(3):\n"
    "        try:\n"
    "            return len(urllib.request.urlopen(sys.argv[1], timeout=10).read())\n"
    "        except OSError as exc:\n"
    "            print('retry', exc, file=sys.stderr, flush=True)\n"
    "            time.sleep(1)\n"
    "    return 0\n"
    "print(fetch(), flush=True)\n"
    "end = time.time() + 300\n"
    "while not os.path.exists(sys.argv[2]) and time.time() < end:\n"
    "    time.sleep(0.05)\n"
    "time.sleep(random.uniform(0, 3))\n"
    "print(fetch(), flush=True)\n"
)
LOOP_JOBS = 100


def test_the_sweeper_in_a_loop_never_touches_a_starting_job(sandbox, host):
    """``cleanup --orphans`` over and over while a hundred jobs start (and three dead
    agents' things wait for it): every job keeps its namespace, veth, chain and NAT source,
    and downloads right after "network ready" and again at its end."""
    for i in range(3):
        killed_after_setup(sandbox, host, sandbox.job_name(f"dead{i}"))
    go = Path(f"/tmp/{sandbox.prefix}-go")  # (the jobs run as nobody: the sandbox is root's)
    names = [sandbox.job_name(f"m{i}") for i in range(LOOP_JOBS)]
    stop = threading.Event()
    sweeps: list = []

    def sweep_loop() -> None:
        while not stop.is_set():
            sweeps.append(cleanup(sandbox, host))

    thread = threading.Thread(target=sweep_loop)
    thread.start()
    agents = []
    try:
        while not sweeps:
            time.sleep(0.02)
        for name in names:
            argv = sandbox.agent_argv(
                host, *sandbox.who(name), "--", *python_job(LOOP_JOB, sandbox.url("1k"), str(go))
            )
            agents.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True))  # fmt: skip
        first = [sandbox.read_line(a.stdout, 300).strip() for a in agents]
        more = len(sweeps) + 2  # sweeps that ran while every job was up
        assert wait_for(lambda: len(sweeps) >= more, 120)
        spaces = set(netns_list())
        links = sh("ip", "-o", "link", "show", netns=host.netns).stdout
        table = sh("nft", "list", "table", "inet", "lark", netns=host.netns).stdout
        sources = re.search(r"set nat_sources {[^}]*?elements = { ([^}]*) }", table)
        missing = [
            n
            for n in names
            if f"lark-{n}" not in spaces
            or f"e_{n}@" not in links
            or f"chain LARK_{n} " not in table
        ]
    finally:
        stop.set()
        thread.join()
        go.touch()
        results = [a.communicate(timeout=300) for a in agents]
        go.unlink()
    damaged = [
        (n, a.returncode, out.split(), err.strip()[-200:])
        for n, a, (out, err) in zip(names, agents, results, strict=True)
        if a.returncode != 0 or out.split() != ["1000"]  # (the first line was read above)
    ]
    assert damaged == [] and missing == [], (len(damaged), damaged[:3], missing[:5])
    complaints = [err for _, err in results if "lark-agent" in err]
    assert complaints == [], complaints[:3]
    assert first == ["1000"] * LOOP_JOBS
    assert sources is not None and len(sources.group(1).split(",")) == LOOP_JOBS
    assert all(s.returncode == 0 for s in sweeps), [s.stderr for s in sweeps if s.returncode]
    log = sandbox.log_file.read_text()
    assert [ln for ln in log.splitlines() if " ERROR " in ln] == []
    assert "restoring" not in log and "was removed" not in log and "was deleted" not in log
    for i in range(3):  # the dead agents' things went
        assert f"lark-{sandbox.job_name(f'dead{i}')}" not in netns_list()
