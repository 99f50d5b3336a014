"""Unit tests touch no namespaces: no root-only stale-namespace sweep (tests/conftest.py) here.

Running the unit tests as root must not delete the namespaces of an integration run going on
at the same time.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _stale_sandboxes():
    yield
