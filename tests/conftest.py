from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sandbox import Sandbox, claim, new_prefix, release, sweep_stale

# ``LARK_REQUIRE_INTEGRATION=1`` (CI: contrib/lark-setup test): the namespace tests must run.
# Without root they fail instead of skipping, and a run in which no integration test passed
# (none collected, all skipped or deselected) fails at the end, so a green CI run is never
# the unit tests alone.
REQUIRE_INTEGRATION = os.environ.get("LARK_REQUIRE_INTEGRATION") == "1"
_integration_passed = 0


def _is_integration(nodeid: str) -> bool:
    return "integration" in nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_integration(item.nodeid):  # (namespaces, real servers: seconds each)
            item.add_marker(pytest.mark.root)
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report):
    global _integration_passed
    if report.when == "call" and report.passed and _is_integration(report.nodeid):
        _integration_passed += 1


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_INTEGRATION and _integration_passed == 0 and exitstatus in (0, 5):
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if REQUIRE_INTEGRATION and _integration_passed == 0:
        terminalreporter.write_line(
            "FAILED: LARK_REQUIRE_INTEGRATION=1 and no integration test passed "
            "(not root? none collected?)",
            red=True,
            bold=True,
        )


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
        if REQUIRE_INTEGRATION:
            pytest.fail("needs root (network namespaces), and LARK_REQUIRE_INTEGRATION=1")
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
