"""Pure: the watches section's result types and its report (tables, notes, misses).

bench/watches.py measures; this module only formats what it measured.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from bench.report import SectionReport, Table, load_average

LENGTHS = ((100, 400), (25, 80))  # summary words
MENTION_FRACTION = 0.08
PARTS_ITEMS = 5000  # per language, for the breakdown of matching's time
TARGET_ITEMS_PER_CPU_S = 20_000.0
TARGET_BACKFILL_S = 30.0  # for 1,000,000 items; scaled to --watch-items


@dataclass(frozen=True, slots=True)
class Pass:
    """One timed run of a matcher over items."""

    label: str
    items: int
    wall_s: float
    cpu_s: float
    matched_items: int
    matches: int

    @property
    def per_cpu_s(self) -> float:
        return self.items / self.cpu_s if self.cpu_s else float("inf")


@dataclass(frozen=True, slots=True)
class Check:
    """One correctness check: what was found against what was expected."""

    name: str
    found: str
    expected: str
    ok: bool
    problem: str = ""  # an example, when not ok


@dataclass(frozen=True, slots=True)
class Backfill:
    items: int
    query: str
    mentions: int
    wall_s: float
    cpu_s: float
    rss_before_mb: float | None
    peak_rss_mb: float | None
    batches: int
    generate_s: float
    db_mb: float
    checks: tuple[Check, ...]
    more: tuple[tuple[str, float, str], ...]  # (step, wall_s, outcome), without a target


def make_report(
    options: argparse.Namespace,
    rows: list[tuple[str, ...]],
    parts: list[Pass],
    checks: list[Check],
    backfill: Backfill,
    generate_s: float,
) -> SectionReport:
    checks = [*checks, *backfill.checks]
    target_s = TARGET_BACKFILL_S * backfill.items / 1_000_000
    misses = [
        f"MISS matching {row[0]} words {row[1]}: {row[9]} items/s per CPU second < "
        f"{TARGET_ITEMS_PER_CPU_S:.0f}"
        for row in rows
        if row[-1] == "MISS"
    ]
    if backfill.wall_s > target_s:
        misses.append(f"MISS backfill: {backfill.wall_s:.1f} s > {target_s:.1f} s")
    baseline = parts[0].cpu_s / parts[0].items if parts and parts[0].items else 0.0
    part_rows = tuple(
        (
            part.label,
            str(part.items),
            f"{part.cpu_s:.2f}",
            f"{part.per_cpu_s:.0f}",
            f"{1e6 * (part.cpu_s / part.items - baseline):.1f}" if i else "-",
            str(part.matched_items) if i else "-",
        )
        for i, part in enumerate(parts)
    )

    def mb(value: float | None) -> str:
        return f"{value:.0f}" if value is not None else "-"

    verdict = "PASS" if backfill.wall_s <= target_s else "MISS"
    backfill_row = (
        str(backfill.items), backfill.query, str(backfill.mentions),
        f"{100 * backfill.mentions / backfill.items:.1f}" if backfill.items else "-",
        str(backfill.batches), f"{backfill.wall_s:.2f}", f"{backfill.cpu_s:.2f}",
        f"{backfill.items / backfill.wall_s:.0f}" if backfill.wall_s else "-",
        mb(backfill.rss_before_mb), mb(backfill.peak_rss_mb), f"<={target_s:.1f}s", verdict,
    )  # fmt: skip
    tables = [
        Table(
            ("words", "lang", "items", "mentioned", "matched_items", "matches", "wall_s",
             "cpu_s", "items/s_wall", "items/s_cpu", "target", "result"),
            tuple(rows),
            title="matching: WatchMatcher.match_item, 50 watches (one process, one core)",
        ),
        Table(
            ("run", "items", "cpu_s", "items/s_cpu", "us/item_over_tokenize", "matched_items"),
            part_rows,
            title=f"where matching's time goes ({LENGTHS[0][0]}-{LENGTHS[0][1]} words, en + "
            f"fr, the first {PARTS_ITEMS} items of each, best of {max(1, options.watch_repeat)})",
        ),
        Table(
            ("items", "query", "mentions", "mentions_%", "batches", "wall_s", "cpu_s",
             "items/s_wall", "rss_before_MB", "peak_rss_MB", "target", "result"),
            (backfill_row,),
            title="backfill: one new watch, jobs.watches.backfill_watches end to end",
        ),
    ]  # fmt: skip
    if backfill.more:
        tables.append(
            Table(
                ("step (no target)", "wall_s", "outcome"),
                tuple((step, f"{s:.2f}", outcome) for step, s, outcome in backfill.more),
                title="then, on the same database",
            )
        )
    tables.append(
        Table(
            ("check", "found", "expected", "result"),
            tuple((c.name, c.found, c.expected, "PASS" if c.ok else "FAIL") for c in checks),
            title="correctness",
        )
    )
    problems = [f"FAIL {c.name}: {c.problem}" for c in checks if not c.ok]
    notes = [
        f"matching: {options.watch_match_items} items per language and length ("
        f"{generate_s:.1f} s to generate, not timed), {100 * MENTION_FRACTION:.0f}% with one "
        "injected mention or near miss of a watch; best of "
        f"{max(1, options.watch_repeat)} runs by CPU time after a 500-item warm-up; "
        "items/s_cpu = per CPU second of this process, i.e. per core (the target)",
        f"{LENGTHS[0][0]}-{LENGTHS[0][1]} words = the classify section's items; "
        f"{LENGTHS[1][0]}-{LENGTHS[1][1]} = a lead paragraph, as in the backfill's database",
        "us/item_over_tokenize = CPU microseconds per item beyond tokenize_text alone",
        f"backfill database: {backfill.items} items over 1000 feeds and 60 days, "
        f"{backfill.db_mb:.0f} MB, generated in {backfill.generate_s:.1f} s (not timed), "
        "full-text index left empty; target 30 s per 1,000,000 items, scaled to the size; "
        "peak_rss_MB = this process's VmHWM during the backfill (reset before it)",
        f"listener logs: watches.log in the work dir; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores, load average at the end {load_average()}",
        *problems,
        *misses,
    ]
    if options.watch_spikes == "skip":
        notes.insert(4, "--watch-spikes skip: the 50 watches' backfill and check_spikes skipped")
    return SectionReport(
        name="watches: matching 50 watches, backfilling a new one",
        tables=tuple(tables),
        notes=tuple(notes),
        correct=not problems,
        on_target=not misses,
    )
