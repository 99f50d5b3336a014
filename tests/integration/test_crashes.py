"""SIGKILL of the agent at each step of setup and of teardown, then the sweeper."""

from __future__ import annotations

import re
import signal
import time

import pytest
from test_nat import read_update_ad
from test_sweeper import cleanup

STEPS = ["address", "netns", "firewall", "undo-firewall", "undo-processes", "undo-veth",
         "undo-netns"]  # fmt: skip


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_any_step_leaves_nothing_after_the_sweeper(sandbox, host, step):
    name = sandbox.job_name()
    agent = sandbox.start_agent(
        host, *sandbox.who(name), "--", "true", env={"_LARK_TEST_PAUSE_AFTER": step}
    )
    log = sandbox.log_file
    for _ in range(500):
        if log.exists() and f"test pause after {step}" in log.read_text():
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"no pause after {step}: {log.read_text() if log.exists() else ''}")
    agent.send_signal(signal.SIGKILL)
    agent.communicate(timeout=10)
    found = re.search(rf"{name}: addresses \S+ \(host\) / (\S+) \(job\)", log.read_text())
    swept = cleanup(sandbox, host)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert sandbox.leftovers() == []
    # the pair is free again: a new job of the same name gets it back
    update = sandbox.tmp / "again.ad"
    again = sandbox.run_agent(host, *sandbox.who(name), "--update-ad", str(update), "--", "true")
    assert again.returncode == 0, again.stderr
    if found:
        assert read_update_ad(update)["LarkInnerAddressIPv4"] == found.group(1)
