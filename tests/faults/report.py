"""Counts of what each fault test sent and what came out, printed as one table.

Every fault test records one :class:`FaultCounts` row. ``lost`` and ``duplicated``
must be 0 for the suite to pass; the table is printed at the end of the pytest run
(see ``conftest.py``) and written to ``test-output/faults-summary.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class FaultCounts:
    """What one fault test proved, in numbers."""

    row: int
    fault: str
    accepted: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def rejected_text(self) -> str:
        """``reason:n`` pairs, or ``-``."""
        return ", ".join(f"{r}:{n}" for r, n in sorted(self.rejected.items())) or "-"


RESULTS: list[FaultCounts] = []


def record(counts: FaultCounts) -> FaultCounts:
    """Add a row to the summary table and check the two promises (0 lost, 0 duplicated)."""
    RESULTS.append(counts)
    assert counts.lost == 0, f"row {counts.row}: {counts.lost} lost"
    assert counts.duplicated == 0, f"row {counts.row}: {counts.duplicated} duplicated"
    return counts


def table(results: list[FaultCounts]) -> list[str]:
    """The summary table as text lines."""
    head = (f"{'#':>3} {'fault':<52} {'accepted':>8} {'delivered':>9} {'dup':>4} {'lost':>4}"
            "  rejected")
    lines = [head, "-" * len(head)]
    for c in sorted(results, key=lambda r: (r.row, r.fault)):
        lines.append(f"{c.row:>3} {c.fault[:52]:<52} {c.accepted:>8} {c.delivered:>9} "
                     f"{c.duplicated:>4} {c.lost:>4}  {c.rejected_text()}")
    total = FaultCounts(0, "total")
    for c in results:
        total.accepted += c.accepted
        total.delivered += c.delivered
        total.duplicated += c.duplicated
        total.lost += c.lost
        total.rejected.update(c.rejected)
    lines.append("-" * len(head))
    lines.append(f"{'':>3} {'total (' + str(len(results)) + ' faults)':<52} {total.accepted:>8} "
                 f"{total.delivered:>9} {total.duplicated:>4} {total.lost:>4}  "
                 f"{sum(total.rejected.values())} rejections")
    return lines


def write_json(results: list[FaultCounts], path: Path) -> None:
    """Machine-readable copy of the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(c), "rejected": dict(c.rejected)} for c in results]
    path.write_text(json.dumps(rows, indent=2) + "\n")
