"""One-line errors for the person who must act, and the exit status of each kind."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from lark_async.backends.netlink import NetlinkError
from lark_async.errors import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    EXIT_SETUP_FAILED,
    AdError,
    ConfigError,
    Interrupted,
    JobStartError,
    KernelError,
    LarkError,
    ResourceError,
    UsageError,
    map_errors,
)
from lark_async.job.process import Job, JobUser


def test_os_error_becomes_kernel_error_naming_the_action():
    original = OSError(errno.EEXIST, "File exists")
    with pytest.raises(KernelError) as info, map_errors("create veth e_x"):
        raise original
    assert str(info.value) == "create veth e_x: File exists"
    assert info.value.__cause__ is original


def test_a_real_failed_system_call_is_mapped(tmp_path):
    with pytest.raises(KernelError) as info, map_errors("stat missing"):
        os.stat(tmp_path / "missing")
    assert str(info.value) == "stat missing: No such file or directory"
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_netlink_request_error_is_mapped_with_its_strerror():
    with pytest.raises(KernelError) as info, map_errors("create veth e_x/i_x"):
        raise NetlinkError(errno.EEXIST, "create veth e_x/i_x")
    assert str(info.value) == "create veth e_x/i_x: File exists"


def test_mapped_message_is_one_line():
    with pytest.raises(KernelError) as info, map_errors("write  x"):
        raise OSError(errno.EIO, "first line\n  second\tline\n")
    assert str(info.value) == "write x: first line second line"


def test_os_error_without_errno_uses_its_text():
    with pytest.raises(KernelError) as info, map_errors("load"):
        raise OSError("cannot load libfoo")
    assert str(info.value) == "load: cannot load libfoo"


def test_os_error_with_errno_but_no_strerror_uses_the_errno_name():
    exc = OSError()
    exc.errno = errno.EPERM
    with pytest.raises(KernelError) as info, map_errors("setns"):
        raise exc
    assert str(info.value) == "setns: EPERM"


def test_map_errors_can_raise_another_kind():
    with pytest.raises(ResourceError) as info, map_errors("lock /x", ResourceError):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value) == "lock /x: No space left on device"
    assert info.value.exit_code == EXIT_SETUP_FAILED


@pytest.mark.parametrize("error", [ConfigError("bad"), AdError("bad"), UsageError("bad")])
def test_lark_errors_pass_through_unchanged(error):
    with pytest.raises(LarkError) as info, map_errors("anything"):
        raise error
    assert info.value is error


def test_other_exceptions_are_not_mapped():
    with pytest.raises(ValueError), map_errors("anything"):
        raise ValueError("a bug, not a kernel refusal")


def test_nothing_raised_means_nothing_mapped():
    ran = []
    with map_errors("anything") as entered:
        ran.append("body")
    ran.append("after")  # no exception left the block
    assert entered is None and ran == ["body", "after"]


@pytest.mark.parametrize(
    ("signum", "exit_code", "message"),
    [
        (signal.SIGTERM, 143, "interrupted by SIGTERM during setup"),
        (signal.SIGINT, 130, "interrupted by SIGINT during setup"),
        (signal.SIGHUP, 129, "interrupted by SIGHUP during setup"),
    ],
)
def test_interrupted_exits_with_128_plus_the_signal(signum, exit_code, message):
    error = Interrupted(signum)
    assert error.exit_code == exit_code
    assert str(error) == message


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (UsageError("x"), 2),
        (ConfigError("x"), 125),
        (AdError("x"), 125),
        (ResourceError("x"), 125),
        (KernelError("x"), 125),
    ],
)
def test_exit_codes(error, exit_code):
    assert error.exit_code == exit_code


def test_a_job_that_cannot_start_gets_127_when_missing_and_126_when_not_executable():
    """A JobStartError carries the status it is given: what is checked is the status each
    cause gets when a job is spawned (errors.py: 127 not found, 126 cannot execute, as
    ``env`` has them)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the job is spawned as a user, with its groups)")
    user = JobUser("nobody", 65534, 65534, ())
    where = Path(tempfile.mkdtemp())  # (pytest's tmp_path is root's alone: nobody's cwd here)
    try:
        where.chmod(0o755)
        missing, plain = where / "missing", where / "not-executable"
        plain.write_text("#!/bin/sh\n")
        plain.chmod(0o644)
        with pytest.raises(JobStartError) as info:
            Job.spawn([str(missing)], None, user, {}, where)
        assert (info.value.exit_code, str(info.value)) == (
            127,
            f"job command not found: {missing}",
        )
        with pytest.raises(JobStartError) as info:
            Job.spawn([str(plain)], None, user, {}, where)
        assert (info.value.exit_code, str(info.value)) == (
            126,
            f"job command {plain} cannot be executed by nobody: Permission denied",
        )
    finally:
        shutil.rmtree(where)
    assert (EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND) == (126, 127)
