"""decide/scripts.py: an admin's callout script runs only if it is root's alone and
executable; otherwise one line names the script's kind, its path and what is wrong."""

from __future__ import annotations

import os

import pytest
from helpers.rootfiles import NOBODY, make_root_dir, program

from lark_async.decide.scripts import Script
from lark_async.errors import ConfigError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files")


@pytest.fixture
def root_dir(tmp_path):
    return make_root_dir(tmp_path)


def error(script: Script) -> str:
    with pytest.raises(ConfigError) as info:
        script.check()
    return str(info.value)


@pytest.mark.parametrize("mode", [0o755, 0o700, 0o100])
def test_a_root_executable_in_root_directories_passes(root_dir, mode):
    Script("create", str(program(root_dir / "s", mode)), 5.0).check()


@pytest.mark.parametrize("mode", [0o644, 0o655, 0o600])  # no execute bit for its owner, root
def test_a_script_root_cannot_execute_is_refused(root_dir, mode):
    path = str(program(root_dir / "s", mode))
    assert error(Script("delete", path, 5.0)) == f"delete script {path} is not executable"


def test_a_script_not_roots_alone_is_refused_by_its_kind(root_dir):
    path = str(program(root_dir / "s", owner=NOBODY))
    assert error(Script("policy", path, 5.0)) == f"policy script {path} is not owned by root"
    assert error(Script("create", str(root_dir), 5.0)) == (
        f"create script {root_dir} is not a regular file"
    )
