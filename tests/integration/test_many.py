"""A hundred agents started at the same moment on one host."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.agent import python_job

N = 100
JOB = (
    "import os, socket, sys, time\n"
    "print(socket.create_connection(('10.77.0.1', 8080)).getsockname()[0], flush=True)\n"
    "end = time.time() + 200\n"
    "while not os.path.exists(sys.argv[1]) and time.time() < end:\n"
    "    time.sleep(0.05)\n"
)


def test_a_hundred_agents_at_once_all_run_with_distinct_addresses(sandbox, host):
    go = Path(f"/tmp/{sandbox.prefix}-go")  # all jobs hold their addresses until this exists
    agents = [
        subprocess.Popen(
            sandbox.agent_argv(
                host,
                *sandbox.who(f"{sandbox.prefix}m{i}"),
                "--",
                *python_job(JOB, str(go)),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(N)
    ]
    try:
        addresses = [sandbox.read_line(a.stdout, 240).strip() for a in agents]
    finally:
        go.touch()
        results = [a.communicate(timeout=240) for a in agents]
        go.unlink()
    codes = [a.returncode for a in agents]
    assert codes == [0] * N, [err for (_, err), c in zip(results, codes, strict=True) if c][:3]
    assert len(set(addresses)) == N and all(a.startswith("192.168.181.") for a in addresses)
    assert not any(err.strip() for _, err in results)  # no lock or firewall complaints
