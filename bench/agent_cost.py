"""What one ``lark-agent run`` costs while its NAT job runs: memory, and CPU per accounting poll.

    sudo .venv/bin/python bench/agent_cost.py [--rounds 3] [--window 4]

Each round starts two agents in turn, each with a NAT job that says "ready" and sleeps:
* one with an accounting interval of a minute (no poll in the window): its resident
  (VmRSS) and anonymous (RssAnon) memory from /proc/PID/status once the job runs (the
  network is up then), and its CPU over the window (what an agent costs between polls);
* one with ``--accounting-interval 0.05``: its CPU (utime + stime, /proc/PID/stat) over
  the same window, from half a second after the job started. Less the idle agent's, that
  is the polls' CPU C; with P polls, each taking CPU c and the interval i of sleep,
  P = T / (i + c) over a window T, so c = C i / (T - C) (the poll's wall time taken as
  its CPU time, which it is but for waits on the kernel). Kernel ticks are 10 ms, so a
  short window is coarse.
While the polling agent's job runs, the bench itself reads the same job's counters the
way the agent does (``nft.read_counters``: one nfnetlink dump of the job's chain) in a
loop: the CPU of one plain read, the same-run baseline for the poll's (the target is a
ratio to it, which holds on a busy machine where milliseconds do not). Then SIGTERM (the
agent forwards it to its job and cleans up). Runs inside a throwaway host namespace.
"""

from __future__ import annotations

import argparse
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    agent_run,
    bench_prefix,
    bench_tmp,
    cpu_of,
    in_bench_host,
    print_table,
    proc_status_kib,
)

FAST = 0.05  # seconds between polls of the polling agent
IDLE = 60  # ... and of the idle one: longer than the window
SETTLE = 0.5  # seconds after the job starts before the window opens
PLAIN_READS = 200  # plain reads of the counters timed together


def start(name: str, interval: float, sleep_s: float) -> subprocess.Popen:
    tmp = bench_tmp()
    argv = agent_run(tmp, "--name", name, "--log-file", str(tmp / "agent.log"))
    argv += ["--accounting-interval", f"{interval:g}", "--"]
    argv += ["/bin/sh", "-c", f"echo ready; exec sleep {sleep_s:g}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready or proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"{name}: the job did not start; see {tmp / 'agent.log'}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def window_cpu(proc: subprocess.Popen, window_s: float) -> float:
    time.sleep(SETTLE)
    cpu0 = cpu_of(proc.pid)
    time.sleep(window_s)
    return cpu_of(proc.pid) - cpu0


def plain_read_ms(job: str, reads: int = PLAIN_READS) -> float:
    """CPU ms of one read of the job's counters by the agent's own method, in a loop here."""
    from lark_async.backends.firewall import nft
    from lark_async.decide import names

    chain = names.chain_name(job)
    nft.read_counters(chain)  # imports, first socket: not timed
    cpu0 = time.process_time()
    for _ in range(reads):
        nft.read_counters(chain)
    return (time.process_time() - cpu0) / reads * 1e3


def measure(rounds: int = 3, window_s: float = 4.0) -> dict[str, list[float]]:
    """Per round: 'VmRSS MB', 'RssAnon MB' (10^6 bytes) of the idle agent with its job
    running; 'idle agent CPU ms/s'; 'poll CPU ms' (per poll, one job); 'plain read CPU ms'
    (one read of the same counters by the same method, in this process). Inside a bench host."""
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    for r in range(rounds):
        idle = start(f"{bench_prefix()}i{r}", IDLE, window_s + SETTLE + 5)
        try:
            status = proc_status_kib(idle.pid)
            add("VmRSS MB", status["VmRSS"] * 1024 / 1e6)
            add("RssAnon MB", status["RssAnon"] * 1024 / 1e6)
            idle_cpu = window_cpu(idle, window_s)
        finally:
            stop(idle)
        fast_name = f"{bench_prefix()}p{r}"
        fast = start(fast_name, FAST, window_s + SETTLE + 5)
        try:
            polls_cpu = max(0.0, window_cpu(fast, window_s) - idle_cpu)
            add("plain read CPU ms", plain_read_ms(fast_name))
        finally:
            stop(fast)
        add("idle agent CPU ms/s", idle_cpu / window_s * 1e3)
        add("poll CPU ms", polls_cpu * FAST / (window_s - polls_cpu) * 1e3)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=4.0, help="seconds of CPU measured")
    args = parser.parse_args()
    rc = in_bench_host(__file__, sys.argv[1:])
    if rc >= 0:
        return rc
    samples = measure(args.rounds, args.window)
    title = f"One lark-agent run with its NAT job running, {args.rounds} rounds"
    memory = [(k, samples[k]) for k in ("VmRSS MB", "RssAnon MB")]
    print_table(f"{title}: memory", memory, unit="MB", scale=1)
    cpu = [(k, s) for k, s in samples.items() if "MB" not in k]
    cpu_title = f"{title}: CPU (the median is in each row's own unit)"
    print_table(cpu_title, cpu, ["plain read CPU ms"], ["plain read"], unit="", scale=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
