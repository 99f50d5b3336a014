"""Setup and teardown of one NAT job's network: Lark in-process vs. shell scripts doing the same.

    sudo .venv/bin/python bench/setup_teardown.py [--rounds N]

Contenders, interleaved round by round so drift hits all alike:
* Lark in-process: Supervisor.setup_network() and teardown() after imports
  (address lock, state record, netns, veth, addresses, route, nft chain + NAT).
* shell, one command per step: ``ip netns add``, ``ip link add ... netns``,
  ``ip addr``/``ip link``/``ip route`` one by one, ``nft -f`` with Lark's own
  rendered ruleset; teardown ``nft -f``, ``ip link del``, ``ip netns del``.
* shell, batched: the same through ``ip -batch`` and one ``nft -f``.
* whole ``lark-agent run -- true`` wall time, next to ``true`` alone.
Everything runs inside a throwaway host namespace; nothing touches the machine's network.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
from common import agent_run, bench_prefix, bench_tmp, in_bench_host, print_table

from lark_async import plan as lark_plan
from lark_async.backends import nft
from lark_async.jobproc import JobUser
from lark_async.settings import Settings
from lark_async.supervisor import RunRequest, Supervisor

EXT, INT = "192.168.200.2", "192.168.200.3"


def shell_scripts(name: str) -> tuple[str, str, str, str]:
    ns, e, i, chain = f"lark-{name}", f"e_{name}", f"i_{name}", f"LARK_{name}"
    rules = nft.render_add(nft.JobRules(chain, e, ipaddress.IPv4Address(INT), nat=True))
    remove = nft.render_remove(nft.JobRules(chain, e, ipaddress.IPv4Address(INT), nat=True))
    per_command = f"""set -e
ip netns add {ns}
ip -n {ns} link set lo up
ip link add {e} type veth peer name {i} netns {ns}
ip addr add {EXT} peer {INT} dev {e}
ip link set {e} up
ip -n {ns} addr add {INT} peer {EXT} dev {i}
ip -n {ns} link set {i} up
ip -n {ns} route add default via {EXT}
nft -f - <<'EOF'
{rules}
EOF
"""
    batched = f"""set -e
ip netns add {ns}
ip -batch - <<EOF
link add {e} type veth peer name {i} netns {ns}
addr add {EXT} peer {INT} dev {e}
link set {e} up
EOF
ip -n {ns} -batch - <<EOF
link set lo up
addr add {INT} peer {EXT} dev {i}
link set {i} up
route add default via {EXT}
EOF
nft -f - <<'EOF'
{rules}
EOF
"""
    teardown = f"""nft -f - <<'EOF'
{remove}
EOF
ip link del {e}
ip netns del {ns}
"""
    batched_teardown = teardown
    return per_command, teardown, batched, batched_teardown


def timed_shell(script: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - t0


async def lark_round(name: str, tmp: Path) -> tuple[float, float]:
    settings = Settings(
        state_dir=tmp / "state",
        lock_dir=tmp / "lock",
        local_network=ipaddress.IPv4Network("192.168.181.0/24"),
    )
    job_plan = lark_plan.derive_plan(settings, name)
    user = JobUser("nobody", 65534, 65534, ())
    sup = Supervisor(RunRequest(job_plan, ["true"], user, {}, None, None))
    t0 = time.perf_counter()
    await sup.setup_network()
    t1 = time.perf_counter()
    errors = await sup.teardown()
    t2 = time.perf_counter()
    assert not errors, errors
    return t1 - t0, t2 - t1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    rc = in_bench_host(__file__, sys.argv[1:])
    if rc >= 0:
        return rc
    prefix, tmp = bench_prefix(), bench_tmp()
    agent = agent_run(tmp, "--log-file", str(tmp / "agent.log"))
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    # warm-up: first-use costs (table creation, module caches) are not what we compare
    trio.run(lark_round, f"{prefix}w", tmp)
    for r in range(args.rounds):
        setup, teardown = trio.run(lark_round, f"{prefix}l{r}", tmp)
        add("lark setup", setup)
        add("lark teardown", teardown)
        add("lark setup+teardown (in-process)", setup + teardown)
        per_cmd, td, _, _ = shell_scripts(f"{prefix}s{r}")
        _, _, batched, btd = shell_scripts(f"{prefix}b{r}")
        s, t = timed_shell(per_cmd), timed_shell(td)
        add("shell per-command setup", s)
        add("shell per-command teardown", t)
        add("shell per-command setup+teardown", s + t)
        s, t = timed_shell(batched), timed_shell(btd)
        add("shell batched setup+teardown", s + t)
        t0 = time.perf_counter()
        subprocess.run([*agent, "--name", f"{prefix}r{r}", "--", "true"], check=True)
        add("lark-agent run -- true (wall)", time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(["true"], check=True)
        add("true alone (wall)", time.perf_counter() - t0)
    order = [
        "lark setup",
        "lark teardown",
        "lark setup+teardown (in-process)",
        "shell per-command setup",
        "shell per-command teardown",
        "shell per-command setup+teardown",
        "shell batched setup+teardown",
    ]
    print_table(
        f"One NAT job's network, {args.rounds} rounds (kernel {os.uname().release})",
        [(k, samples[k]) for k in order],
        ["shell per-command setup+teardown", "shell batched setup+teardown"],
    )
    print_table(
        "Whole agent run",
        [(k, samples[k]) for k in ("lark-agent run -- true (wall)", "true alone (wall)")],
        ["true alone (wall)"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
