"""The reliability suite's session ledger and its summary (one line per category)."""

from __future__ import annotations

import pytest

from tests.support.reliability import Ledger

LEDGER = Ledger()


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return LEDGER


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """True with ``pytest --long``: the seeded loops go round many more times."""
    return bool(request.config.getoption("--long"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = LEDGER.lines()
    if not lines:
        return
    terminalreporter.section("reliability")
    for line in lines:
        terminalreporter.write_line(line)
    LEDGER.write()
