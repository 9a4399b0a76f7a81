"""The reliability suite's session ledger and its summary (one line per category)."""

from __future__ import annotations

import pytest

from tests.support.reliability import Ledger

LEDGER = Ledger()
SECRETS_MODULE = "test_secrets.py"


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return LEDGER


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """True with ``pytest --long``: the seeded loops go round many more times."""
    return bool(request.config.getoption("--long"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The secrets check reads what every other test left behind, so its module runs last; the
    rest keep their order."""
    last = [item for item in items if item.path.name == SECRETS_MODULE]
    if last:
        items[:] = [item for item in items if item.path.name != SECRETS_MODULE] + last


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = LEDGER.lines()
    if not lines:
        return
    terminalreporter.section("reliability")
    for line in lines:
        terminalreporter.write_line(line)
    LEDGER.write()
