"""Admin callout scripts: run without a shell, bounded in time, their output in Lark's log.

The create script (``NETWORK_NAMESPACE_CREATE_SCRIPT`` / ``LarkStartupScript``)
runs once the job's address and firewall chain exist, the delete script
(``NETWORK_NAMESPACE_DELETE_SCRIPT`` / ``LarkCleanupScript``) first thing at
cleanup; arguments and stdin are those of the original Lark (DESIGN.md section
3). A script is an admin setting, so it must also look like one on disk: an
absolute path to a root-owned executable that no one else may write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..decide.scripts import Script
from ..errors import LarkError, ResourceError, map_errors

log = logging.getLogger("lark.callouts")
SCRIPT_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AD_SEPARATOR = "------\n"
_KEPT_OUTPUT = 64 * 1024  # per stream: a chatty script cannot fill the agent's memory


class ScriptError(LarkError):
    """A callout script failed, timed out or could not be started."""


def ads_stdin(job_ad_text: str, machine_ad_text: str) -> bytes:
    """The job ad, a line of dashes, the machine ad."""
    job = job_ad_text if job_ad_text.endswith("\n") or not job_ad_text else job_ad_text + "\n"
    return (job + AD_SEPARATOR + machine_ad_text).encode()


@contextlib.contextmanager
def _fresh_workdir(state_dir: Path | None) -> Iterator[str]:
    """An empty directory of root's for one script run, removed after it: a script that
    writes relative paths (its arguments are names, not paths) writes there, not into ``/``."""
    if state_dir is None:
        yield "/"
        return
    with map_errors(f"create state dir {state_dir}", ResourceError):
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        workdir = tempfile.mkdtemp(prefix=".script-", dir=state_dir)
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_script(
    script: Script,
    args: Sequence[str],
    stdin: bytes,
    job: str,
    env: dict[str, str],
    state_dir: Path | None,
) -> str:
    """Run it and return its stdout; raise ScriptError on failure. Blocking (call it from a
    thread); the whole process group is killed when it runs out of time. It runs in a fresh
    empty directory under ``state_dir``."""
    with _fresh_workdir(state_dir) as workdir:
        return _run(script, [script.path, *args], stdin, job, env, workdir)


def _run(
    script: Script, argv: list[str], stdin: bytes, job: str, env: dict[str, str], workdir: str
) -> str:
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": SCRIPT_ENV_PATH, **env},
            cwd=workdir,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise ScriptError(f"{script.kind} script {script.path} cannot run: {exc.strerror}") from exc
    try:
        out, err = proc.communicate(stdin, timeout=script.timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        _log_output(script, job, out, err)
        raise ScriptError(
            f"{script.kind} script {script.path} did not finish within {script.timeout_s:g} s "
            "and was killed"
        ) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    _log_output(script, job, out, err)
    if proc.returncode != 0:
        reason = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        last = _last_line(err) or _last_line(out)
        raise ScriptError(
            f"{script.kind} script {script.path} failed ({reason})" + (f": {last}" if last else "")
        )
    log.info("%s: %s script %s succeeded", job, script.kind, script.path)
    return out[:_KEPT_OUTPUT].decode(errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data[-_KEPT_OUTPUT:].decode(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:200] if lines else ""


def _log_output(script: Script, job: str, out: bytes, err: bytes) -> None:
    for stream, data in (("stdout", out), ("stderr", err)):
        for line in data[:_KEPT_OUTPUT].decode(errors="replace").splitlines():
            log.info("%s: %s script %s: %s", job, script.kind, stream, line)


def run_policy_script(
    script: Script, job_ad_text: str, machine_ad_text: str, state_dir: Path | None
) -> str:
    """The policy script's output (decide/policy.py's apply_policy_output reads it): stdin
    the ads; a failure refuses the job."""
    script.check()
    return run_script(script, [], ads_stdin(job_ad_text, machine_ad_text), "policy", {}, state_dir)
