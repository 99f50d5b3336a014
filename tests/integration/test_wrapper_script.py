"""contrib/htcondor/lark-job-wrapper itself, run as HTCondor's starter runs it: as the job user,
with the job's command line, ``_CONDOR_WRAPPER_ERROR_FILE`` set. ``sudo`` is a stand-in first
in PATH that records how it was called (the machine's sudoers stay as they are)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers.agent import NOBODY

WRAPPER = Path(__file__).resolve().parents[2] / "contrib" / "htcondor" / "lark-job-wrapper"
FAKE_SUDO = '#!/bin/sh\nprintf "%s\\n" "$@" > "$0.argv"\ncat <&3 > "$0.env"\n'


@pytest.fixture
def job_dir():
    """A directory the job user owns, reachable by it, with the stand-in sudo in bin/."""
    if os.geteuid() != 0:
        pytest.skip("needs root (runs the wrapper as nobody)")
    top = Path(tempfile.mkdtemp(prefix="lark-wrapper."))
    try:
        top.chmod(0o711)
        (top / "bin").mkdir()
        sudo = top / "bin" / "sudo"
        sudo.write_text(FAKE_SUDO)
        sudo.chmod(0o755)
        # a copy where the job user can read it (a checkout may be under /root, 0700)
        shutil.copy2(WRAPPER, top / "bin" / WRAPPER.name)
        for path in (top / "bin", top):
            os.chown(path, NOBODY, NOBODY)
        yield top
    finally:
        shutil.rmtree(top)


def run_wrapper(top: Path, *setpriv: str) -> subprocess.CompletedProcess:
    argv = ["setpriv", *setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    argv += [str(top / "bin" / WRAPPER.name), "sh", "-c", f"touch {top}/job-ran"]
    env = {
        "PATH": f"{top}/bin:/usr/bin:/bin",
        "FOO": "bar baz",
        "_CONDOR_WRAPPER_ERROR_FILE": str(top / ".wrapper_error"),
    }
    return subprocess.run(argv, env=env, cwd=top, capture_output=True, text=True, timeout=30)


def test_with_no_new_privs_the_wrapper_names_disable_setuid_and_runs_nothing(job_dir):
    r = run_wrapper(job_dir, "--no-new-privs")
    assert r.returncode == 1, r.stderr
    lines = (job_dir / ".wrapper_error").read_text().splitlines()
    assert len(lines) == 1 and "DISABLE_SETUID" in lines[0] and "no_new_privs" in lines[0]
    assert r.stderr == lines[0] + "\n" and not r.stdout
    assert (job_dir / ".wrapper_error").stat().st_uid == NOBODY
    assert not (job_dir / "bin" / "sudo.argv").exists()  # sudo was not run
    assert not (job_dir / "job-ran").exists()


def test_without_no_new_privs_the_wrapper_hands_the_job_to_sudo(job_dir):
    r = run_wrapper(job_dir)
    assert r.returncode == 0, r.stderr
    assert not r.stderr and not (job_dir / ".wrapper_error").exists()
    argv = (job_dir / "bin" / "sudo.argv").read_text().splitlines()
    job = ["sh", "-c", f"touch {job_dir}/job-ran"]
    assert argv == ["-n", "-C", "4", "/usr/local/sbin/lark-agent", "wrap", "--", *job]
    env = (job_dir / "bin" / "sudo.env").read_bytes().split(b"\0")
    assert b"FOO=bar baz" in env and f"PWD={job_dir}".encode() in env
