"""Fuzz suite: the end-of-run table of generated inputs per fuzzer and their outcomes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.fuzz.common import COUNTS, SECONDS, scale


@pytest.fixture(autouse=True)
def _time_fuzzers() -> Iterator[None]:
    """Charge each test's wall time to the fuzzers that counted inputs during it."""
    before = {name: sum(c.values()) for name, c in COUNTS.items()}
    start = time.monotonic()
    yield
    spent = time.monotonic() - start
    grown = [name for name, c in COUNTS.items() if sum(c.values()) != before.get(name, 0)]
    for name in grown:
        SECONDS[name] += spent / len(grown)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many inputs each fuzzer ran, in how long, and the commonest outcomes."""
    if not COUNTS:
        return
    terminalreporter.section(f"fuzz summary (budget x{scale():g})")
    grand, seconds = 0, 0.0
    for fuzzer in sorted(COUNTS):
        counts = COUNTS[fuzzer]
        n = sum(counts.values())
        grand += n
        seconds += SECONDS[fuzzer]
        top = ", ".join(f"{k}={v}" for k, v in counts.most_common(6))
        terminalreporter.write_line(
            f"{fuzzer:<26} {n:>7} inputs {SECONDS[fuzzer]:>7.1f}s  {top}")
    terminalreporter.write_line(f"{'total':<26} {grand:>7} inputs {seconds:>7.1f}s")
