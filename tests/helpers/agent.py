"""Running the agent in a sandbox host: Python jobs, the update ad, a fetch, cleanup, a kill."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import classad2
from sandbox import sh

PY = "/usr/bin/python3"
NOBODY = 65534  # the job user of ``sandbox.who()``
FETCH = (
    "import sys, urllib.request\n"
    "n = len(urllib.request.urlopen(sys.argv[1], timeout=10).read())\n"
    "print(n)\n"
)


def python_job(code: str, *args: str) -> tuple[str, ...]:
    """The argv of a job that runs ``code`` (isolated from the agent's environment)."""
    return (PY, "-I", "-c", code, *args)


FETCH_JOB = python_job(FETCH)


def read_update_ad(path: Path) -> dict:
    return dict(classad2.parseOne(path.read_text(), classad2.ParserType.Old).items())


def run_fetch(sandbox, host, size: str, *extra: str, name: str | None = None):
    ad = sandbox.tmp / f"{size}.update.ad"
    result = sandbox.run_agent(
        host,
        *sandbox.who(name or sandbox.job_name()),
        "--update-ad",
        str(ad),
        *extra,
        "--",
        *FETCH_JOB,
        sandbox.url(size),
    )
    return result, ad


PAUSE = {"_LARK_TEST_PAUSE_AFTER": "firewall"}


def killed_after_setup(sandbox, host, name: str, *flags: str):
    """An agent SIGKILLed with its network up (the test pause holds it after the firewall)."""
    log = sandbox.log_file
    paused = log.read_text().count("test pause after") if log.exists() else 0
    agent = sandbox.start_agent(host, *sandbox.who(name), *flags, "--", "true", env=PAUSE)
    for _ in range(400):
        if log.exists() and log.read_text().count("test pause after") > paused:
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"the agent never reached its pause: {log.read_text()}")
    agent.send_signal(signal.SIGKILL)
    agent.communicate(timeout=10)


def cleanup(sandbox, host, *flags: str):
    """``cleanup --orphans`` of this sandbox's jobs only (/run/netns is the machine's: other
    runs' namespaces are left alone)."""
    return cleanup_named(sandbox, host, "--orphans", "--match", sandbox.prefix, *flags)


def cleanup_named(sandbox, host, *args: str):
    """``lark-agent cleanup ARGS`` with this sandbox's state and lock directories."""
    argv = sandbox.agent_argv(
        host,
        *args,
        "--state-dir",
        str(sandbox.state_dir),
        "--lock-dir",
        str(sandbox.lock_dir),
        verb="cleanup",
    )
    return sh(*argv[2:], netns=host.netns, check=False)
