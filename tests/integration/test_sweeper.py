"""cleanup --orphans: everything of a dead agent goes, a live job is never touched."""

from __future__ import annotations

import signal
import time

from sandbox import sh

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
    argv = sandbox.agent_argv(
        host,
        "--orphans",
        "--match",
        sandbox.prefix,
        "--state-dir",
        str(sandbox.state_dir),
        "--lock-dir",
        str(sandbox.lock_dir),
        *flags,
        verb="cleanup",
    )
    return sh(*argv[2:], netns=host.netns, check=False)


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
