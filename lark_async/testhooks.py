"""Test-only fault injection: ``_LARK_TEST_PAUSE_AFTER=step[,step...]`` makes the agent wait
after the named steps of setup (``address``, ``netns``, ``firewall``, ..., and those of making
the site bridge, ``bridge-create`` ... ``bridge-rules``) or of teardown (``undo-firewall``,
``undo-veth``, ...), so a test can signal or SIGKILL it at an exact point.
Root-only like everything else here; unset in production."""

from __future__ import annotations

import errno
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


# ``_LARK_TEST_KERNEL_LACKS=feature[,...]``: pretend the kernel lacks a feature, so the path a
# kernel without it takes runs on this one (backends/netlink/probe.py asks the kernel a question
# only a kernel without it fails; backends/cgroup.py treats ``cgroup2`` as not mounted,
# ``cgroup.kill`` as a kernel before 5.14; ``htb``: shaping asks for a qdisc kind it cannot know).
LACKS = frozenset(filter(None, os.environ.get("_LARK_TEST_KERNEL_LACKS", "").split(",")))


def pretend_lacks(feature: str) -> bool:
    return feature in LACKS


# ``_LARK_TEST_FAIL_AFTER=step[,...]``: fail as the kernel would right after a named point of a
# multi-step change (``bridge-create``, ``bridge-clear``, ``bridge-addresses``, ``bridge-routes``,
# ``bridge-rules`` while making the site bridge; ``shape-ingress`` once the node's end of a job's
# veth is shaped), so a test sees the rollback from there.
FAILS = frozenset(filter(None, os.environ.get("_LARK_TEST_FAIL_AFTER", "").split(",")))


def fail_after(step: str) -> None:
    if step in FAILS:
        log.warning("test failure after %s", step)
        raise TestFailure(step)


class TestFailure(OSError):
    """What ``fail_after`` raises: an OSError, so it takes the path a refusal takes."""

    def __init__(self, step: str) -> None:
        super().__init__(errno.EIO, "injected by _LARK_TEST_FAIL_AFTER")
        self.what = f"test failure after {step}"
