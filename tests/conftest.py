from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sandbox import Sandbox, claim, new_prefix, release, sweep_stale


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in item.nodeid.split("::")[0]:
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session", autouse=True)
def _stale_sandboxes():
    if os.geteuid() == 0:
        sweep_stale()
    yield


@pytest.fixture
def sandbox():
    """A site namespace with an HTTP server; add execute hosts with ``sandbox.add_host()``.

    Fails the test when anything of it is left after the test body.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    prefix = new_prefix()
    held = claim(prefix)
    box = Sandbox(prefix, Path(tempfile.mkdtemp(prefix=f"{prefix}.")), f"{prefix}-site")
    try:
        box.create_site()
        yield box
        left = box.wait_clean()
        assert not left, f"left behind: {left}"
    finally:
        box.destroy()
        release(prefix, held)


@pytest.fixture
def host(sandbox):
    return sandbox.add_host()
