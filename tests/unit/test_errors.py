"""One-line errors for the person who must act, and the exit status of each kind."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from lark_async.backends.netlink import NetlinkError
from lark_async.errors import (
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
    with map_errors("anything"):
        pass


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
        (JobStartError("x", 126), 126),
        (JobStartError("x", 127), 127),
    ],
)
def test_exit_codes(error, exit_code):
    assert error.exit_code == exit_code


def test_an_error_without_a_message_shows_its_kind():
    assert str(KernelError()) == "KernelError"
