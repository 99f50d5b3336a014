"""HTCondor's hard kill of a Lark job (issue 18): the time from the starter's ``cgroup.kill``
to nothing of the job left, and the agent's own memory, outside the job's cgroup.

    sudo .venv/bin/python bench/starter_kill.py [--rounds 20]

Each round a simulated starter (tests/helpers/starter.py, which does what HTCondor's does,
citing its source) runs ``lark-agent wrap`` born in the job's cgroups, as
``USER_JOB_WRAPPER`` is; the NAT job fetches 3 MB from the site and sleeps. The bench then
does the starter's ``kill_family`` (freeze, ``cgroup.kill``, SIGKILL of what is left, thaw)
and times until the agent has exited, then checks that nothing of the job is left: no
namespace, veth, firewall rule, cgroup, lock or state record (``sandbox.leftovers()``).

Compared in the same run with ``LARK_AGENT_CGROUP = none``, the agent left in the job's
cgroup as before issue 18: it dies with the job, and the row counts the rounds where
something was still there 3 s after the kill (``lark-agent cleanup`` then removes it, as
the node's sweeper timer would, up to 15 minutes later).

Memory, while the job sleeps: the agent's anonymous memory (``RssAnon`` of
/proc/PID/status), and what the job's memory cgroup holds (v2 ``memory.current``, else v1
``memory.usage_in_bytes``) with the agent out of it and in it: the difference is what the
agent would take from the job's memory limit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import print_columns, print_table, site_sandbox
from helpers.agent import cleanup_named
from helpers.starter import Starter
from helpers.wrap import starter as scratch_with_ads

ADS = {".job.ad": "ClusterId = 18\nProcId = 0\n", ".machine.ad": 'Name = "slot1_1@node"\n'}
FETCH = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()"
JOB = '/usr/bin/python3 -I -c "$1" "$2" || exit 99; touch ready; exec sleep 600'
AFTER_S = 3.0  # "nothing left within 3 s" (the test)


def rss_anon(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def one_round(box, host, agent_cgroup: str) -> dict:
    """One job under a starter, killed by it: seconds to the agent's exit, what was left
    then and 3 s after the kill, and the memory figures before the kill."""
    starter = Starter(box)
    try:
        scratch, env = scratch_with_ads(box, ADS)
        config = "LARK_ACCOUNTING_INTERVAL = 1\n"
        if agent_cgroup != "default":
            config += f"LARK_AGENT_CGROUP = {agent_cgroup}\n"
        job = ("/bin/sh", "-c", JOB, "job", FETCH, box.url("3m"))
        agent = starter.start(host, env, *job, cwd=scratch, config=config)
        end = time.monotonic() + 30
        while not (scratch / "ready").exists():
            if agent.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the job never got ready: {agent.communicate()[1]}")
            time.sleep(0.02)
        time.sleep(1.5)  # a poll or so into the sleep: the agent at its steady size
        memory = {"anon": rss_anon(agent.pid), "job_cgroup": starter.memory()}
        started = time.perf_counter()
        starter.cgroup_kill()
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            tail = box.log_file.read_text()[-2000:] if box.log_file.exists() else ""
            print(f"the agent outlived its job by 30 s; its log ends:\n{tail}", file=sys.stderr)
            raise
        exited = time.perf_counter() - started
        at_exit = box.leftovers()
        time.sleep(max(0.0, AFTER_S - (time.perf_counter() - started)))
        after = box.leftovers()
        agent.communicate(timeout=5)
        if after:  # the agent died with its job: what the sweeper timer would do, now
            names = [p.stem for p in box.state_dir.glob("*.json")]
            cleanup_named(box, host, *names)
            cleanup_named(box, host, "--orphans", "--match", "lark")
        return {"exit_s": exited, "at_exit": at_exit, "after": after, **memory}
    finally:
        starter.cleanup()


def wrap_true(box, host, agent_cgroup: str) -> float:
    """Seconds of ``wrap -- true`` under the starter, from its start to the agent's exit:
    with the agent out of the job's cgroup, that is two process images (reexec.py)."""
    starter = Starter(box)
    try:
        scratch, env = scratch_with_ads(box, ADS)
        config = "" if agent_cgroup == "default" else f"LARK_AGENT_CGROUP = {agent_cgroup}\n"
        started = time.perf_counter()
        agent = starter.start(host, env, "/bin/true", cwd=scratch, config=config)
        agent.communicate(timeout=60)
        took = time.perf_counter() - started
        if agent.returncode != 0:
            raise RuntimeError(f"wrap -- true exited {agent.returncode}")
        return took
    finally:
        starter.cleanup()


def rounds_of(rounds: int) -> dict[str, list[dict]]:
    """``rounds`` of each setting, alternating which goes first."""
    results: dict[str, list[dict]] = {
        "default": [],
        "none": [],
        "wrap default": [],
        "wrap none": [],
    }
    with site_sandbox() as box:
        box.create_site()
        host = box.add_host()
        for k in range(rounds):
            for setting in ("default", "none") if k % 2 == 0 else ("none", "default"):
                results[setting].append(one_round(box, host, setting))
                results[f"wrap {setting}"].append({"s": wrap_true(box, host, setting)})
    return results


MB = 1e6


def measure(rounds: int = 20) -> dict[str, list[float]]:
    """For bench/report.py: seconds from cgroup.kill to the agent's exit; rounds with
    something left (at the exit, and 3 s after the kill, agent out and agent in); MB
    charged to the job's cgroup (agent out and in) and the agent's RssAnon."""
    results = rounds_of(rounds)
    moved, stayed = results["default"], results["none"]
    return {
        "cgroup.kill to the agent's exit, nothing left": [r["exit_s"] for r in moved],
        "rounds with leftovers at the agent's exit": [sum(1 for r in moved if r["at_exit"])],
        f"rounds with leftovers {AFTER_S:g} s after, agent out": [
            sum(1 for r in moved if r["after"])
        ],
        f"rounds with leftovers {AFTER_S:g} s after, agent in (none)": [
            sum(1 for r in stayed if r["after"])
        ],
        "job cgroup MB, agent out": [
            r["job_cgroup"] / MB for r in moved if r["job_cgroup"] is not None
        ],
        "job cgroup MB, agent in (none)": [
            r["job_cgroup"] / MB for r in stayed if r["job_cgroup"] is not None
        ],
        "agent RssAnon MB": [r["anon"] / MB for r in moved],
        "wrap -- true, agent out (two images)": [r["s"] for r in results["wrap default"]],
        "wrap -- true, agent in (none, one image)": [r["s"] for r in results["wrap none"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results = rounds_of(args.rounds)
    moved, stayed = results["default"], results["none"]
    print_table(
        f"cgroup.kill of a running NAT job's cgroup to the agent's exit, {args.rounds} rounds",
        [("agent out of the job's cgroup (default)", [r["exit_s"] for r in moved])],
    )
    print_table(
        "wrap -- true under the starter, start to exit (ratio: to the agent left in)",
        [
            ("agent in (none): one process image", [r["s"] for r in results["wrap none"]]),
            ("agent out (default): two images", [r["s"] for r in results["wrap default"]]),
        ],
        baselines=["agent in (none): one process image"],
    )
    mib = 1 << 20

    def median_mib(rows: list[dict], key: str) -> str:
        values = [r[key] for r in rows if r[key] is not None]
        return f"{statistics.median(values) / mib:.1f}" if values else "-"

    print_columns(
        "What was left, and memory while the job sleeps (medians)",
        [
            "LARK_AGENT_CGROUP",
            "rounds",
            "left at exit",
            f"left {AFTER_S:g} s after kill",
            "agent RssAnon MiB",
            "job cgroup MiB",
        ],
        [
            [
                name,
                len(rows),
                sum(1 for r in rows if r["at_exit"]) if name != "none" else "-",
                sum(1 for r in rows if r["after"]),
                median_mib(rows, "anon"),
                median_mib(rows, "job_cgroup"),
            ]
            for name, rows in (("../lark.agents (default)", moved), ("none", stayed))
        ],
    )
    leaks = [r for r in moved if r["at_exit"] or r["after"]]
    for r in leaks[:3]:
        print(f"left behind: {r['at_exit'] or r['after']}", file=sys.stderr)
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
