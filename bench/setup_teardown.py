"""Setup and teardown of one NAT job's network: Lark in-process vs. its peers doing the same.

    sudo .venv/bin/python bench/setup_teardown.py [--rounds N] [--live N]

Contenders, interleaved round by round (in rotating order) so drift hits all alike:
* Lark in-process: Supervisor.setup_network() and teardown() after imports (the network
  driver validated before, untimed, as the agent validates before it sets up)
  (address lock, state record, netns, veth, addresses, route, nft chain + NAT).
* shell, one command per step: ``ip netns add``, ``ip link add ... netns``,
  IPv6 off at both ends (``echo``, ``ip netns exec ... sysctl``),
  ``ip addr``/``ip link``/``ip route`` one by one, ``nft -f`` with Lark's own
  rules; teardown ``nft -f``, ``ip link del``, ``ip netns del``.
* shell, batched: the same through ``ip -batch`` and one ``nft -f``.
* the CNI bridge plugin (host-local IPAM, ``ipMasq``), invoked the CNI way
  (CNI_COMMAND=ADD/DEL, config on stdin), and netavark ``setup``/``teardown``
  (bridge driver, iptables firewall driver), when installed. Their figures are
  the plugin's ADD and DEL alone: the job's namespace is made before and removed
  after, untimed (Lark's and the shell's include it). Both keep their bridge and
  state in the bench host and its tmpfs. netavark removes its bridge and network
  rules with its last container, so a lone job pays for them every round.
* whole ``lark-agent run -- true`` wall time, next to ``true`` alone and to the start-up
  of the same Python measured in the same rounds (``python -I -c pass`` and
  ``python -I -c 'import trio'``): the agent's target is a ratio to the latter, which
  holds on a busy machine where milliseconds do not.
``--live N``: the same contenders with N jobs of their own already running (set up
one after another and kept), timing job N+1's setup and teardown at a few points on
the way (see ``live``).
Everything runs inside a throwaway host namespace; nothing touches the machine's network.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
from common import (
    agent_run,
    bench_prefix,
    bench_tmp,
    cni_env,
    cni_plugin_dir,
    in_bench_host,
    print_table,
)

from lark_async.backends.firewall import nft
from lark_async.decide import plan as lark_plan
from lark_async.decide import policy
from lark_async.decide.request import JobRequest
from lark_async.decide.settings import Settings
from lark_async.job.process import JobUser
from lark_async.job.supervisor import RunRequest, Supervisor

EXT, INT = "192.168.200.2", "192.168.200.3"
NOBODY = JobUser("nobody", 65534, 65534, ())
NETAVARK = ("netavark", "/usr/lib/podman/netavark", "/usr/libexec/podman/netavark")


def peer_rules(chain: str, ifname: str, inner: str) -> tuple[str, str]:
    """The shell peer's nft text for one NAT job, added and removed: the rules Lark sends
    as one nfnetlink batch (backends/netlink/nfnl.py ``job_add``/``job_remove``), written
    as a script doing Lark's work by hand would write them."""
    t, port = f"{nft.FAMILY} {nft.TABLE}", f'"{ifname}"'
    node = "fib daddr type != unicast"  # (the node closed to the job, Lark's default)
    add = [
        nft.render_base(),
        f"add chain {t} {chain}",
        f'add rule {t} {chain} iifname {port} counter comment "Outgoing"',
        f'add rule {t} {chain} oifname {port} counter comment "Incoming"',
        f"add rule {t} {chain} iifname {port} ip saddr != {inner} drop",
        f"add rule {t} {chain} iifname {port} {node} ct state established,related return",
        f"add rule {t} {chain} iifname {port} icmpv6 type nd-neighbor-solicit {node} return",
        f"add rule {t} {chain} iifname {port} icmpv6 type nd-neighbor-advert {node} return",
        f"add rule {t} {chain} iifname {port} {node} drop",
        f'add rule {t} {chain} iifname {port} oifname "e_*" '
        "ct state & (established | related) == 0 drop",
        f"add element {t} {nft.JOB_MAP} {{ {port} : jump {chain} }}",
        f"add element {t} {nft.NAT_SET} {{ {inner} }}",
    ]
    remove = [
        f"delete element {t} {nft.JOB_MAP} {{ {port} }}",
        f"delete element {t} {nft.NAT_SET} {{ {inner} }}",
        f"flush chain {t} {chain}",
        f"delete chain {t} {chain}",
    ]
    return "\n".join(add), "\n".join(remove)


def shell_scripts(name: str, ext: str = EXT, inner: str = INT) -> tuple[str, str, str, str]:
    ns, e, i, chain = f"lark-{name}", f"e_{name}", f"i_{name}", f"LARK_{name}"
    rules, remove = peer_rules(chain, e, inner)
    per_command = f"""set -e
ip netns add {ns}
ip -n {ns} link set lo up
ip link add {e} type veth peer name {i} netns {ns}
echo 1 > /proc/sys/net/ipv6/conf/{e}/disable_ipv6
ip netns exec {ns} sysctl -qw net.ipv6.conf.{i}.disable_ipv6=1
ip addr add {ext} peer {inner} dev {e}
ip link set {e} up
ip -n {ns} addr add {inner} peer {ext} dev {i}
ip -n {ns} link set {i} up
ip -n {ns} route add default via {ext}
nft -f - <<'EOF'
{rules}
EOF
"""
    batched = f"""set -e
ip netns add {ns}
ip -batch - <<EOF
link add {e} type veth peer name {i} netns {ns}
addr add {ext} peer {inner} dev {e}
link set {e} up
EOF
echo 1 > /proc/sys/net/ipv6/conf/{e}/disable_ipv6
ip netns exec {ns} sysctl -qw net.ipv6.conf.{i}.disable_ipv6=1
ip -n {ns} -batch - <<EOF
link set lo up
addr add {inner} peer {ext} dev {i}
link set {i} up
route add default via {ext}
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


def timed(argv: list[str], **kwargs) -> float:
    """Wall time of one command, which must succeed (its output is shown if it does not)."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return elapsed


def timed_shell(script: str) -> float:
    return timed(["bash", "-c", script])


# -- contenders: each sets up and tears down one job's network by a short key ------------


class Lark:
    label = "lark (in-process)"

    def __init__(self, tmp: Path, network: str = "192.168.181.0/24"):
        self.settings = Settings(
            state_dir=tmp / "state",
            lock_dir=tmp / "lock",
            local_network=ipaddress.IPv4Network(network),
        )
        self.jobs: dict[str, Supervisor] = {}

    async def setup(self, key: str) -> float:
        grant = policy.decide(self.settings, JobRequest())
        job_plan = lark_plan.derive_plan(grant, f"{bench_prefix()}l{key}")
        sup = self.jobs[key] = Supervisor(RunRequest(job_plan, ["true"], NOBODY, {}, None, None))
        assert sup.network is not None
        sup.network.validate()  # (the agent's check before setup: not what is timed here)
        t0 = time.perf_counter()
        await sup.setup_network()
        return time.perf_counter() - t0

    async def teardown(self, key: str) -> float:
        sup = self.jobs.pop(key)
        t0 = time.perf_counter()
        errors = await sup.teardown()
        elapsed = time.perf_counter() - t0
        assert not errors, errors
        return elapsed


class Shell:
    """Lark's work as a shell script, one command per step or batched; each job gets its own
    address pair (10.90.x.y outside, 10.91.x.y inside), so many can run at once."""

    def __init__(self, batched: bool):
        self.batched = batched
        self.label = "shell batched" if batched else "shell per-command"
        self.teardowns: dict[str, str] = {}
        self.count = 0

    async def setup(self, key: str) -> float:
        n, self.count = self.count, self.count + 1
        host = f"{n // 250}.{n % 250 + 1}"
        per_cmd, td, batched, btd = shell_scripts(
            f"{bench_prefix()}{'b' if self.batched else 's'}{key}", f"10.90.{host}", f"10.91.{host}"
        )
        self.teardowns[key] = btd if self.batched else td
        return timed_shell(batched if self.batched else per_cmd)

    async def teardown(self, key: str) -> float:
        return timed_shell(self.teardowns.pop(key))


class Peer:
    """A container network tool: the job's namespace is made and removed around it, untimed."""

    label = ""

    def netns(self, key: str) -> str:
        return f"{bench_prefix()}-{self.tag}{key}"

    async def setup(self, key: str) -> float:
        subprocess.run(["ip", "netns", "add", self.netns(key)], check=True)
        return self.call("ADD", key)

    async def teardown(self, key: str) -> float:
        elapsed = self.call("DEL", key)
        subprocess.run(["ip", "netns", "del", self.netns(key)], check=True)
        return elapsed


class Cni(Peer):
    label = "CNI bridge"
    tag = "c"

    def __init__(self, tmp: Path):
        plugins = cni_plugin_dir()
        assert plugins is not None
        self.plugins = plugins
        self.config = json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "lkbench",
                "type": "bridge",
                "bridge": f"{bench_prefix()}-cni",
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.88.0.0/16",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(tmp / "cni"),
                },
            }
        )

    @staticmethod
    def available() -> bool:
        return cni_plugin_dir() is not None

    def call(self, command: str, key: str) -> float:
        env = cni_env(command, f"{bench_prefix()}{key}", self.netns(key), self.plugins)
        return timed([f"{self.plugins}/bridge"], input=self.config, env=env)


class Netavark(Peer):
    label = "netavark"
    tag = "v"

    def __init__(self, tmp: Path):
        self.binary = next(b for b in map(shutil.which, NETAVARK) if b)
        self.config_dir = tmp / "netavark"
        self.config_dir.mkdir(exist_ok=True)
        self.network = {
            "name": "lkbench",
            "id": "1a" * 32,
            "driver": "bridge",
            "network_interface": f"{bench_prefix()}-nv",
            "subnets": [{"subnet": "10.89.0.0/16", "gateway": "10.89.0.1"}],
            "ipv6_enabled": False,
            "internal": False,
            "dns_enabled": False,
        }
        self.addresses: dict[str, str] = {}

    @staticmethod
    def available() -> bool:
        return any(map(shutil.which, NETAVARK))

    def call(self, command: str, key: str) -> float:
        if key not in self.addresses:  # podman's part: pick the address
            n = len(self.addresses)
            self.addresses[key] = f"10.89.{n // 250}.{n % 250 + 2}"
        options = {
            "container_id": f"{bench_prefix()}{key}",
            "container_name": key,
            "networks": {
                "lkbench": {"interface_name": "eth0", "static_ips": [self.addresses[key]]}
            },
            "network_info": {"lkbench": self.network},
        }
        verb = "setup" if command == "ADD" else "teardown"
        netns = f"/run/netns/{self.netns(key)}"
        argv = [self.binary, "--config", str(self.config_dir), verb, netns]
        env = {"PATH": os.environ["PATH"], "NETAVARK_FW": "iptables"}
        return timed(argv, input=json.dumps(options), env=env)


def contenders(tmp: Path, network: str, per_command: bool = True) -> list:
    found = [Lark(tmp, network), *([Shell(False)] if per_command else []), Shell(True)]
    return found + [peer(tmp) for peer in (Cni, Netavark) if peer.available()]


# -- the measurements ------------------------------------------------------------------


async def lark_round(key: str, tmp: Path) -> tuple[float, float]:
    """One Lark job's network set up and torn down in-process: (setup s, teardown s)."""
    lark = Lark(tmp)
    return await lark.setup(key), await lark.teardown(key)


# What ``lark-agent run -- true`` is compared with, run right after it in every round.
BASELINE_STARTS = {
    "true alone (wall)": ["true"],
    "python -I -c pass (wall)": [sys.executable, "-I", "-c", "pass"],
    "python -I -c 'import trio' (wall)": [sys.executable, "-I", "-c", "import trio"],
}


def measure(rounds: int = 30) -> dict[str, list[float]]:
    """Seconds per round: '<contender> setup', '... teardown', '... setup+teardown' for each
    contender, 'lark-agent run -- true (wall)' and each row of BASELINE_STARTS. Inside a bench
    host."""
    return trio.run(_measure, rounds)


async def _measure(rounds: int) -> dict[str, list[float]]:
    tmp = bench_tmp()
    agent = agent_run(tmp, "--log-file", str(tmp / "agent.log"))
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    systems = contenders(tmp, "192.168.181.0/24")
    for r in range(-1, rounds):  # round -1: warm-up (table and bridge creation, caches)
        for c in systems[r % len(systems) :] + systems[: r % len(systems)]:
            setup = await c.setup(f"r{r + 1}")
            teardown = await c.teardown(f"r{r + 1}")
            if r >= 0:
                add(f"{c.label} setup", setup)
                add(f"{c.label} teardown", teardown)
                add(f"{c.label} setup+teardown", setup + teardown)
        t0 = time.perf_counter()
        subprocess.run([*agent, "--name", f"{bench_prefix()}a{r + 1}", "--", "true"], check=True)
        wall = time.perf_counter() - t0
        walls = {"lark-agent run -- true (wall)": wall}
        for row, argv in BASELINE_STARTS.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True)
            walls[row] = time.perf_counter() - t0
        if r >= 0:
            for row, seconds in walls.items():
                add(row, seconds)
    return samples


def live(jobs: int = 200, checkpoints: list[int] | None = None, rounds: int = 5) -> dict[str, dict]:
    """Each contender (but the per-command shell) in turn with jobs of its own running: at
    each checkpoint k (k jobs set up and kept), ``rounds`` times job k+1 set up and torn
    down. Per contender (by label): 'fill' (seconds to set up job 1, 2, ... jobs while
    filling), 'setup'/'teardown' {k: seconds}, 'teardown_all' (the kept jobs at the end).
    Inside a bench host."""
    points = sorted(set(checkpoints or [0, jobs // 4, jobs // 2, 3 * jobs // 4, jobs]))
    return trio.run(_live, points, rounds)


async def _live(points: list[int], rounds: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    # room for the kept jobs: a /22 has 512 point-to-point pairs
    for c in contenders(bench_tmp(), "192.168.180.0/22", per_command=False):
        await c.setup("w")  # warm-up
        await c.teardown("w")
        res: dict = {"fill": [], "setup": {}, "teardown": {}, "teardown_all": []}
        kept: list[str] = []
        extra = 0
        for k in points:
            while len(kept) < k:
                kept.append(f"k{len(kept)}")
                res["fill"].append(await c.setup(kept[-1]))
            for _ in range(rounds):
                key, extra = f"x{extra}", extra + 1
                res["setup"].setdefault(str(k), []).append(await c.setup(key))
                res["teardown"].setdefault(str(k), []).append(await c.teardown(key))
        for key in kept:
            res["teardown_all"].append(await c.teardown(key))
        results[c.label] = res
        print(f"live jobs: {c.label} done", file=sys.stderr)
        await trio.sleep(1)  # the kernel destroys the namespaces after their last user
    return results


def print_measure(samples: dict[str, list[float]], rounds: int) -> None:
    labels = [k.removesuffix(" setup") for k in samples if k.endswith(" setup")]
    order = [f"{label} {what}" for what in ("setup", "teardown") for label in labels]
    order += [f"{label} setup+teardown" for label in labels]
    base = [b for b in ("CNI bridge setup+teardown", "shell batched setup+teardown") if b in order]
    print_table(
        f"One NAT job's network, {rounds} rounds (kernel {os.uname().release})",
        [(k, samples[k]) for k in order],
        ["lark (in-process) setup+teardown", *base],
        ["lark", *(b.removesuffix(" setup+teardown") for b in base)],
    )
    print_table(
        "Whole agent run",
        [(k, samples[k]) for k in ("lark-agent run -- true (wall)", *BASELINE_STARTS)],
        list(BASELINE_STARTS),
        ["true", "python pass", "import trio"],
    )


def print_live(results: dict[str, dict]) -> None:
    for label, res in results.items():
        points = list(res["setup"])
        rows = [(f"{label} setup, {k} live", res["setup"][k]) for k in points]
        rows += [(f"{label} teardown, {k} live", res["teardown"][k]) for k in points]
        rows += [(f"{label} teardown of the {points[-1]} kept", res["teardown_all"])]
        print_table(
            f"{label}: job k+1 with k jobs of its own running", rows, [rows[0][0]], ["0 live"]
        )
        fill = res["fill"]
        blocks = [fill[i : i + 20] for i in range(0, len(fill), 20)]
        print(
            "setup ms while filling, medians by 20 jobs: "
            + " ".join(f"{statistics.median(b) * 1e3:.1f}" for b in blocks)
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--live", type=int, default=0, help="also with N jobs running")
    parser.add_argument("--live-rounds", type=int, default=5)
    args = parser.parse_args()
    rc = in_bench_host(__file__, sys.argv[1:])
    if rc >= 0:
        return rc
    print_measure(measure(args.rounds), args.rounds)
    if args.live:
        print_live(live(args.live, rounds=args.live_rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
