"""Pure: what a benchmark section hands back, and the plain-text tables it is printed as."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""


@dataclass(frozen=True, slots=True)
class SectionReport:
    """One section's tables and notes; `correct` is about results, `on_target` about targets."""

    name: str
    tables: tuple[Table, ...]
    notes: tuple[str, ...] = field(default=())
    correct: bool = True
    on_target: bool = True


def format_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    widths = [len(name) for name in columns]
    for row in rows:
        for at, cell in enumerate(row):
            widths[at] = max(widths[at], len(cell))
    numeric = [all(_is_number(row[at]) for row in rows) for at in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(columns), *(line(row) for row in rows)])


def format_report(report: SectionReport) -> str:
    parts = [f"== {report.name} =="]
    for table in report.tables:
        if table.title:
            parts.append(f"\n{table.title}")
        parts.append(format_table(table.columns, table.rows))
    parts.append("")
    parts.extend(f"  {note}" for note in report.notes)
    return "\n".join(parts) + "\n"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell in ("-", "")
    return True


def load_average() -> str:
    """The machine's 1, 5 and 15-minute load averages, for a report's notes."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"
