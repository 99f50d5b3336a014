"""Files of root's for the tests of what Lark trusts (trust.py, decide/scripts.py)."""

from __future__ import annotations

import os
from pathlib import Path

NOBODY = 65534


def make_root_dir(tmp_path: Path) -> Path:
    """A directory of root's (under pytest's root-owned tmp tree, in sticky /tmp)."""
    d = tmp_path / "r"
    d.mkdir(mode=0o755)
    for parent in (tmp_path, *tmp_path.parents):
        if parent == parent.parent:
            break
        assert os.stat(parent).st_uid == 0
    return d


def program(path: Path, mode: int = 0o755, owner: int = 0) -> Path:
    """A shell script at ``path`` with ``mode``, owned by ``owner`` (user and group)."""
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    os.chown(path, owner, owner)
    return path
