"""lark-job-wrapper run as HTCondor's starter and sudo would: scratch files, environment, fd 3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lark_async
from helpers.agent import NOBODY

# ``python -I`` (sudo's reset environment) ignores PYTHONPATH and would run the package the
# venv was installed from: the agent under test comes first on sys.path, so that a
# worktree's tests run its own wrap (the same code path as ``-m lark_async.cli``)
SOURCE_ROOT = str(Path(lark_async.__file__).resolve().parents[1])
RUN_CLI = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "runpy.run_module('lark_async.cli', run_name='__main__', alter_sys=True)"
)

JOB = (
    "import os, socket, sys\n"
    "me = socket.create_connection((sys.argv[1], 8080)).getsockname()[0]\n"
    "print(os.getuid(), os.environ.get('FOO'), os.getcwd(), me, sep='|')\n"
)


def starter(sandbox, ads_text: dict[str, str]) -> tuple[os.PathLike, dict[str, str]]:
    """A scratch dir owned by the job user with the starter's files, and the job's env."""
    scratch = sandbox.tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    os.chown(scratch, NOBODY, NOBODY)
    sandbox.tmp.chmod(0o711)  # the job user may reach its scratch dir, and nothing else here
    for name, text in ads_text.items():
        path = scratch / name
        path.write_text(text)
        os.chown(path, NOBODY, NOBODY)
    env = {
        "PATH": "/usr/bin:/bin",
        "FOO": "bar baz",
        "_CONDOR_SCRATCH_DIR": str(scratch),
        "_CONDOR_JOB_AD": str(scratch / ".job.ad"),
        "_CONDOR_MACHINE_AD": str(scratch / ".machine.ad"),
        "_CONDOR_WRAPPER_ERROR_FILE": str(scratch / ".wrapper_error"),
    }
    return scratch, env


def wrap_command(
    sandbox,
    host,
    job_env: dict[str, str],
    *job: str,
    config: str = "",
    sudo_env=None,
    agent_cgroup: str | None = "none",
):
    """What sudo does for lark-job-wrapper: a reset environment, SUDO_* set, fd 3 kept.
    Returns (argv, env, fd) for subprocess; ``fd`` is the read end of the job's environment.
    ``agent_cgroup``: LARK_AGENT_CGROUP, or None to leave it unset (the agent's default)."""
    path = sandbox.tmp / "condor_config"
    path.write_text(
        f"LARK_STATE_DIR = {sandbox.state_dir}\nLARK_LOCK_DIR = {sandbox.lock_dir}\n"
        f"LARK_LOG_FILE = {sandbox.log_file}\n"
        # htcondor2 resolves the host's name when it loads; a sandbox has no DNS
        "NO_DNS = true\nDEFAULT_DOMAIN_NAME = lark.invalid\n"
        # started from the test's own cgroups, not a starter's: the agent stays there
        # (tests/helpers/starter.py runs it where a starter would, with the default)
        + (f"LARK_AGENT_CGROUP = {agent_cgroup}\n" if agent_cgroup is not None else "")
        + config
    )
    payload = b"".join(f"{k}={v}".encode() + b"\0" for k, v in job_env.items())
    read, write = os.pipe()
    os.write(write, payload)
    os.close(write)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SUDO_UID": str(NOBODY),
        "SUDO_GID": str(NOBODY),
        "SUDO_USER": "nobody",
        "CONDOR_CONFIG": str(path),
        **(sudo_env or {}),
    }
    argv = ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-I", "-c", RUN_CLI]
    argv += [SOURCE_ROOT, "wrap", "--", *job]
    return argv, env, read


def start_wrap(sandbox, host, job_env, *job: str, cwd=None, config: str = "", sudo_env=None):
    argv, env, read = wrap_command(sandbox, host, job_env, *job, config=config, sudo_env=sudo_env)
    try:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(read, 3),
            preexec_fn=lambda: os.dup2(read, 3),
        )
    finally:
        os.close(read)


def wrap(sandbox, host, job_env, *job: str, cwd=None, config: str = "", sudo_env=None):
    proc = start_wrap(sandbox, host, job_env, *job, cwd=cwd, config=config, sudo_env=sudo_env)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
