"""Errors grouped by who must act, each with the exit status `run` reports.

Exit statuses of `lark-agent run` (documented in README.rst):

* the job's own status, or 128+N when the job died of signal N;
* 125 -- Lark could not set up the job's network (config, resources, kernel);
* 126 -- the job command exists but could not be executed;
* 127 -- the job command was not found;
* 128+N -- the agent itself got signal N before the job started.

The 125/126/127 convention is the one `env`, `timeout` and `docker run` use.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

EXIT_SETUP_FAILED = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_USAGE = 2


class LarkError(Exception):
    """A failure with a one-line explanation for the person who must act."""

    exit_code = EXIT_SETUP_FAILED

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split()) if self.args else type(self).__name__


class UsageError(LarkError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE


class ConfigError(LarkError):
    """An admin setting has a bad value; the message names setting, value and source."""


class AdError(LarkError):
    """A job or machine ad cannot be read or parsed."""


class JobRequestError(LarkError):
    """The job ad asks for something invalid; names the job-ad attribute."""


class ResourceError(LarkError):
    """Something the node must provide is missing or used up (address pool, device)."""


class KernelError(LarkError):
    """The kernel refused an operation; names the verb and the object."""


class JobStartError(LarkError):
    """The job command could not be started."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(LarkError):
    """A signal asked the agent to stop before the job started."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name} during setup")
        self.exit_code = 128 + signum


@contextlib.contextmanager
def map_errors(doing: str, error: type[LarkError] = KernelError) -> Iterator[None]:
    """Turn OS-level failures of one backend action into a one-line LarkError.

    ``with map_errors("create veth e_x"):`` raises ``KernelError("create veth
    e_x: File exists")`` from the original, so raw library errors never reach
    the user.
    """
    try:
        yield
    except LarkError:
        raise
    except OSError as exc:
        reason = exc.strerror or (errno.errorcode.get(exc.errno or 0) if exc.errno else str(exc))
        raise error(f"{doing}: {reason or exc}") from exc
