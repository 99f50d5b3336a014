"""CI fails loudly when the namespace tests did not run (tests/conftest.py,
``LARK_REQUIRE_INTEGRATION=1`` as contrib/lark-setup's ``test`` sets it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pytest(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LARK_REQUIRE_INTEGRATION"}
    if env_value is not None:
        env["LARK_REQUIRE_INTEGRATION"] = env_value
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    argv += ["tests/unit/test_shaping.py", "-k", "quantum"]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_run_without_integration_tests_fails_when_they_are_required():
    required = _pytest("1")
    assert required.returncode == 1, required.stdout[-2000:]
    assert "LARK_REQUIRE_INTEGRATION=1 and no integration test passed" in required.stdout
    assert "1 passed" in required.stdout  # (the unit test itself passed)
    assert _pytest(None).returncode == 0
