"""Fault-injection suite: fixtures and the end-of-run summary table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.report import RESULTS, table, write_json


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the fault table (accepted, delivered, duplicated, lost, rejected)."""
    if not RESULTS:
        return
    terminalreporter.section("fault-injection summary (FAULTS.md rows)")
    for line in table(RESULTS):
        terminalreporter.write_line(line)
    write_json(RESULTS, Path("test-output") / "faults-summary.json")
