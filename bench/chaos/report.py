"""One row per scenario: what went in, where it ended, what the fault cost; table and JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HEADERS = (
    "scenario",
    "fault",
    "in",
    "stored",
    "dead-lettered",
    "duplicates",
    "lost",
    "replayed",
    "time to recover",
    "verdict",
)


@dataclass
class Row:
    """The measured result of one scenario; ``problems`` empty means it passed."""

    scenario: str
    fault: str
    records_in: int = 0
    stored: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    lost: int = 0
    replayed: int = 0
    recover_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    expected_to_fail: str | None = None  # why a failure is known and accepted for now
    skipped: str | None = None  # why the fault cannot be injected on this machine

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "SKIP"
        if self.passed:
            return "PASS"
        return "XFAIL" if self.expected_to_fail else "FAIL"

    @property
    def counts_as_failure(self) -> bool:
        return not self.passed and self.expected_to_fail is None

    def recovery(self) -> str:
        """The time to recover: the worst fault, and the median when there were several."""
        if not self.recover_s:
            return "-"
        worst = max(self.recover_s)
        if len(self.recover_s) == 1:
            return f"{worst:.1f} s"
        return f"max {worst:.1f} s, p50 {statistics.median(self.recover_s):.1f} s"

    def cells(self) -> list[str]:
        counts = (self.records_in, self.stored, self.dead_lettered, self.duplicates, self.lost)
        return [
            self.scenario,
            self.fault,
            *(f"{value:,}" for value in counts),
            f"{self.replayed:,}",
            self.recovery(),
            self.verdict,
        ]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict, "time_to_recover": self.recovery()}


def render(rows: list[Row]) -> str:
    """A fixed-width table, then each row's problems and notes."""
    cells = [row.cells() for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]
    numeric = range(2, 8)

    def line(values: list[str] | tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    out = [line(HEADERS), "  ".join("-" * w for w in widths), *(line(c) for c in cells)]
    for row in rows:
        if row.skipped:
            out.append(f"{row.scenario}: SKIP: {row.skipped}")
        for problem in row.problems:
            out.append(f"{row.scenario}: {row.verdict}: {problem}")
        if row.expected_to_fail and row.problems:
            out.append(f"{row.scenario}: expected to fail until {row.expected_to_fail}")
        for note in row.notes:
            out.append(f"{row.scenario}: {note}")
    return "\n".join(out)


def write_json(rows: list[Row], path: Path, context: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**context, "rows": [row.as_json() for row in rows]}
    path.write_text(json.dumps(document, indent=2) + "\n")
