"""wrap's hand-over to its second image (backends/reexec.py): only root's own sealed memfd
on fd 4 is taken; whatever else a caller leaves there is not."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TAKE = "from lark_async.backends import reexec; print(reexec.take_over())"
HAND = (
    "import sys; from lark_async.backends import reexec\n"
    "sys.orig_argv[:] = [sys.executable, '-I', '-c', sys.argv[1]]\n"
    "reexec.hand_over({'config': {'LARK_X': 'y'}, 'placement': [1, 2]})\n"
)
# the caller's forgeries: fd 4 set up, then the second image's check
FORGE = (
    "import fcntl, os, sys\n"
    "kind = sys.argv[1]\n"
    "if kind == 'file':\n"
    "    fd = os.open(sys.argv[2], os.O_RDONLY)\n"
    "else:\n"
    "    name = 'lark-handoff' if kind != 'name' else 'other'\n"
    "    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)\n"
    "    os.write(fd, b'{\"config\": {}}')\n"
    "    os.lseek(fd, 0, 0)\n"
    "    if kind != 'unsealed':\n"
    "        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK"
    " | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)\n"
    "os.dup2(fd, 4)\n"
    "os.execv(sys.executable, [sys.executable, '-I', '-c', sys.argv[3]])\n"
)


def python(*argv: str) -> str:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_second_image_gets_what_the_first_handed_over():
    assert python("-c", HAND, TAKE) == "{'config': {'LARK_X': 'y'}, 'placement': [1, 2]}"


def test_without_a_hand_over_there_is_nothing_to_take():
    assert python("-c", TAKE) == "None"


@pytest.mark.parametrize("kind", ["name", "unsealed", "file"])
def test_what_a_caller_leaves_on_fd_4_is_not_taken(kind, tmp_path):
    forged = tmp_path / "handoff"
    forged.write_text('{"config": {}}')
    assert python("-c", FORGE, kind, str(forged), TAKE) == "None"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a memfd of a user's")
def test_only_roots_sealed_memfd_of_that_name_is_taken():
    """The second image runs as root: a memfd the caller made is the caller's, however it
    is named and sealed (made here under nobody's effective uid, then given to root's
    second image on fd 4)."""
    assert python("-c", FORGE, "ok", "", TAKE) == "{'config': {}}"
    os.seteuid(65534)
    try:
        fd = os.memfd_create("lark-handoff", os.MFD_ALLOW_SEALING)
    finally:
        os.seteuid(0)
    try:
        os.write(fd, b'{"config": {}}')
        os.lseek(fd, 0, os.SEEK_SET)
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        assert os.fstat(fd).st_uid == 65534
        r = subprocess.run(
            [sys.executable, "-c", TAKE],
            env={"PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            pass_fds=(fd, 4),
            preexec_fn=lambda: os.dup2(fd, 4),
            timeout=30,
        )
    finally:
        os.close(fd)
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr
