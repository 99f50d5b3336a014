"""The job-name lock: an agent holds it for life, a sweeper only to remove, never both."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lark_async.backends import locks
from lark_async.errors import ResourceError

NAME = "s1-42_0"


def test_a_sweeper_cannot_claim_a_live_agents_name_and_the_agent_cannot_take_a_second_one(
    tmp_path,
):
    fd = locks.take_job_lock(tmp_path, NAME)
    assert fd is not None
    assert locks.job_alive(tmp_path, NAME)
    with locks.job_claimed(tmp_path, NAME) as mine:
        assert not mine
    with pytest.raises(ResourceError, match=f"job name {NAME} is in use by a running agent"):
        locks.take_job_lock(tmp_path, NAME)
    locks.release(locks.job_lock_path(tmp_path, NAME), fd)
    assert not locks.job_alive(tmp_path, NAME)
    assert list(tmp_path.iterdir()) == []


def test_an_agent_waits_while_a_sweeper_holds_its_name(tmp_path):
    with locks.job_claimed(tmp_path, NAME) as mine:
        assert mine
        assert locks.take_job_lock(tmp_path, NAME) is None  # (not "in use": ask again)
        assert locks.job_alive(tmp_path, NAME)
    assert list(tmp_path.iterdir()) == []  # the sweeper's claim leaves no file
    fd = locks.take_job_lock(tmp_path, NAME)
    assert fd is not None
    os.close(fd)


def test_the_lock_dies_with_its_agent(tmp_path):
    """A SIGKILLed agent's name is free: the kernel dropped its lock."""
    code = (
        "import sys, os\n"
        "from pathlib import Path\n"
        "from lark_async.backends import locks\n"
        f"fd = locks.take_job_lock(Path({str(tmp_path)!r}), {NAME!r})\n"
        "print(fd, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9 and done.stdout.strip().isdigit(), done.stderr
    assert locks.job_lock_path(tmp_path, NAME).exists()
    assert not locks.job_alive(tmp_path, NAME)
    with locks.job_claimed(tmp_path, NAME) as mine:
        assert mine
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_that_is_a_symlink_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    locks.job_lock_path(tmp_path, NAME).symlink_to(target)
    with pytest.raises(ResourceError, match="lock"):
        locks.take_job_lock(tmp_path, NAME)
    assert target.read_text() == "x"
