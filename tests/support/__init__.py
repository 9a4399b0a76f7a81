"""Helpers shared by the tests, one module per job.

The rule: every helper function or class a test uses lives here (``tests.support.<job>``);
fixtures used by several directories live in ``tests/conftest.py``, and a directory's own
``conftest.py`` holds only fixtures for that directory. Nothing imports from a conftest or
from a test module.
"""
