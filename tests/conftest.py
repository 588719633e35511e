"""Shared test setup: example paths, small builders, and the rule that CI never passes a skipped check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With LIVEAVATAR_FAIL_ON_SKIP=1 (the README's test command), any skipped test fails the run."""
    if os.environ.get("LIVEAVATAR_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"FAILED: {len(skipped)} test(s) skipped; every check must run in CI", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def examples() -> Path:
    """The examples folder (persona and duet YAMLs with their portraits)."""
    return EXAMPLES


@pytest.fixture(scope="session")
def end_of_turn():  # noqa: ANN201 - SmartTurn
    """The end-of-turn model, loaded once and before any test's clock starts, as an application loads its models at
    startup (loading it inside a test would spend the test's clock time: its run deadlines count from the clock)."""
    from liveavatar.devices.end_of_turn import SmartTurn

    model = SmartTurn()
    yield model
    model.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many cases each fuzz test ran and how long it took (issue 11: shown in every `make test`)."""
    from fuzzing import REPORTS

    if REPORTS:
        terminalreporter.section("fuzz tests")
        for report in REPORTS:
            terminalreporter.write_line(report.line())
