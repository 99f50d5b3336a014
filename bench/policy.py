"""The connection policy's cost: new connections per second and bulk throughput, on vs off.

    sudo .venv/bin/python bench/policy.py [--rounds N] [--seconds S]

A site namespace (an accept-and-close TCP server, ``iperf3 -s``) and an execute
host, as in the tests. Each round runs, as NAT jobs of ``lark-agent run``,
interleaved so drift hits both alike:

* a connection loop: connect, close with RST (no TIME_WAIT to exhaust the
  ports), for S seconds; its rate is connections per second. With the policy
  each connection's first packet goes through the agent's queue.
* ``iperf3 -c`` for S seconds: one established flow, which the policy never
  sees (only first packets are queued).

The policy is three entries that allow the site's two ports and deny the rest.
Targets (issue 7, as ratios to the same run's no-policy rows since issue 15): with
the policy at least 0.25x the connections/s of no policy (it was 5,000/s, against
about 19,400 without), and the established throughput at least 0.98x.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bridge import IPERF_PORT, gbits, iperf_argv, start_iperf_server
from common import need_root, print_table, site_sandbox
from sandbox import SITE_ADDR

CONNECT_PORT = 9000
POLICY = (
    f"allow tcp {SITE_ADDR}:{CONNECT_PORT}, allow tcp {SITE_ADDR}:{IPERF_PORT}, deny any 0.0.0.0/0"
)
SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{SITE_ADDR}", {CONNECT_PORT}))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
"""
LOOP = f"""
import socket, struct, sys, time
linger = struct.pack("ii", 1, 0)
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    c = socket.create_connection(("{SITE_ADDR}", {CONNECT_PORT}))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    c.close()
    n += 1
print(n / float(sys.argv[1]))
"""
ROWS = {
    "conn_off": "new TCP connections/s, no policy",
    "conn_on": "new TCP connections/s, policy on (NFQUEUE)",
    "bulk_off": "established TCP Gbit/s, no policy",
    "bulk_on": "established TCP Gbit/s, policy on",
}


def measure(rounds: int = 5, seconds: float = 3.0) -> dict[str, list[float]]:
    """Rates per row (connections/s, Gbit/s), ``rounds`` rounds in a throwaway sandbox."""
    samples: dict[str, list[float]] = {row: [] for row in ROWS.values()}
    with site_sandbox() as box:
        prefix = box.prefix
        box.create_site()
        host = box.add_host()
        box.start_in(box.site, [sys.executable, "-c", SERVER])
        box.wait_for_port(box.site, SITE_ADDR, CONNECT_PORT)
        start_iperf_server(box)
        for r in range(rounds):
            for on in (False, True):
                flags = ("--connection-policy", POLICY, "--audit-dir", str(box.tmp)) if on else ()
                tag = "on" if on else "off"
                job = [sys.executable, "-I", "-c", LOOP, str(seconds)]
                run = box.run_agent(host, *box.who(f"{prefix}c{tag}{r}"), *flags, "--", *job)
                if run.returncode != 0:
                    raise SystemExit(f"connection loop failed: {run.stderr.strip()}")
                samples[ROWS[f"conn_{tag}"]].append(float(run.stdout))
                iperf = iperf_argv(int(seconds))
                run = box.run_agent(host, *box.who(f"{prefix}b{tag}{r}"), *flags, "--", *iperf)
                if run.returncode != 0:
                    raise SystemExit(f"iperf3 job failed: {run.stderr.strip()}")
                samples[ROWS[f"bulk_{tag}"]].append(gbits(run.stdout))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    need_root()
    samples = measure(args.rounds, args.seconds)
    print_table(
        f"Connection policy on vs off, {args.rounds} rounds of {args.seconds:g} s",
        [(row, samples[row]) for row in (ROWS["conn_off"], ROWS["conn_on"])],
        [ROWS["conn_off"]],
        unit="conn/s",
        scale=1,
    )
    print_table(
        "Established flow",
        [(row, samples[row]) for row in (ROWS["bulk_off"], ROWS["bulk_on"])],
        [ROWS["bulk_off"]],
        unit="Gbit/s",
        scale=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
