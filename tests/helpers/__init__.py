"""What several test modules share, one module per concern.

Found like ``tests/sandbox.py``: tests/conftest.py puts ``tests/`` on ``sys.path``, so a test
module imports ``from helpers.agent import ...``. No test module imports another.
"""
