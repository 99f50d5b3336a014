"""Test-only fault injection: ``_LARK_TEST_PAUSE_AFTER=step[,step...]`` makes the agent wait
after the named steps of setup (``address``, ``netns``, ``firewall``, ...) or of teardown
(``undo-firewall``, ``undo-veth``, ...), so a test can signal or SIGKILL it at an exact point.
Root-only like everything else here; unset in production."""

from __future__ import annotations

import logging
import os
import time

PAUSES = frozenset(filter(None, os.environ.get("_LARK_TEST_PAUSE_AFTER", "").split(",")))
log = logging.getLogger("lark.test")


def pause_after(step: str) -> bool:
    """Whether to pause after ``step`` (logged, for the test to see)."""
    if step in PAUSES:
        log.warning("test pause after %s", step)
        return True
    return False


def blocking_pause_after(step: str) -> None:
    if pause_after(step):
        time.sleep(60)
