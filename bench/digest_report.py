"""The digest benchmark's results and tables: each recipient's digest against the target,
where its time goes, and what generating the database took."""

from __future__ import annotations

import os
import platform
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.digest_db import MODEL_VERSION, DbConfig, DbInfo
from bench.report import SectionReport, Table, load_average

NAME = "digest"
TARGET_S = 1.0


@dataclass(frozen=True, slots=True)
class Timed:
    wall_s: float
    cpu_s: float


@dataclass(frozen=True, slots=True)
class RecipientRun:
    name: str
    timezone: str
    follows: str  # functions and tags, in a few words
    items: int  # in the digest (the period's items)
    expected_items: int  # counted with one plain SQL query
    stories: int  # shown in sections + uncertain
    unhealthy: int
    email_kb: float
    previews: tuple[Timed, ...]
    data: Timed
    build: Timed
    render: Timed
    items_query: Timed
    counts_queries: Timed  # the baseline days' label_counts together (7 on this data)
    feeds_query: Timed
    problems: tuple[str, ...]

    @property
    def worst(self) -> Timed:
        return max(self.previews, key=lambda t: t.wall_s)


def make_report(
    config: DbConfig,
    info: DbInfo,
    generate_s: float,
    runs: list[RecipientRun],
    plan: str | None,
    db_path: Path,
) -> SectionReport:
    rows = []
    split_rows = []
    misses = []
    for run in runs:
        worst = run.worst
        on_target = worst.wall_s <= TARGET_S
        verdict = "PASS" if on_target and not run.problems else "FAIL"
        if run.problems:
            verdict += " (wrong)"
        if not on_target:
            misses.append(f"MISS {run.name}: {worst.wall_s:.2f} s > {TARGET_S:g} s per digest")
        rows.append(
            (
                run.name,
                run.timezone,
                run.follows,
                str(run.items),
                str(run.stories),
                str(run.unhealthy),
                f"{run.email_kb:.0f}",
                f"{worst.wall_s:.2f}",
                f"{worst.cpu_s:.2f}",
                f"<={TARGET_S:g}s",
                verdict,
            )
        )
        split_rows.append(
            (
                run.name,
                f"{run.data.wall_s:.2f}",
                f"{run.items_query.wall_s:.2f}",
                f"{run.counts_queries.wall_s:.2f}",
                f"{run.feeds_query.wall_s:.2f}",
                f"{run.build.wall_s:.2f}",
                f"{run.render.wall_s:.3f}",
                f"{run.data.wall_s + run.build.wall_s + run.render.wall_s:.2f}",
                f"{run.data.cpu_s + run.build.cpu_s + run.render.cpu_s:.2f}",
            )
        )
    generation_rows = (
        *((phase, f"{seconds:.1f}") for phase, seconds in info.phases_s.items()),
        ("total", f"{generate_s:.1f}"),
    )
    problems = [f"FAIL {run.name}: {problem}" for run in runs for problem in run.problems]
    first = runs[0] if runs else None
    notes = [
        f"database: {info.items} items from {info.feeds} feeds over {config.days} days "
        f"(~{info.items / max(config.days, 1):.0f} per day) up to {config.end_at:%Y-%m-%d %H:%M}Z, "
        f"{info.predictions} predictions (model {MODEL_VERSION}, {info.uncertain} uncertain), "
        f"{info.classifications} classifications, {info.human_labels} items labelled by a "
        f"person, {info.copies} copies of another feed's story; "
        f"{info.size_bytes / 1e6:.0f} MB on disk; full-text index: {config.fts}",
        "feeds by tag: " + ", ".join(f"{tag} {n}" for tag, n in info.feeds_by_tag.items()),
        "recipients: the digest of the local date of the clock (covering the local day "
        f"before); items = the digest's total_items, checked against a plain count "
        f"({', '.join(f'{r.name} {r.expected_items}' for r in runs)}); stories = shown in the "
        "sections and the uncertain list; bad_feeds = failing, gone or silent feeds listed; "
        "email_KB = the rendered message",
        f"total_s: preview_digest (store queries, build, render), the slowest of "
        f"{len(first.previews) if first else 0} call(s), on a connection opened with open_store "
        "(SQLite's default 2 MB page cache; the OS cache is warm: the file was just written); "
        "cpu_s: this process's CPU time for it, the machine being shared",
        "split (a second, separate run): data_s = digest_data; items_q, counts_q (the "
        "baseline days' label_counts queries together: 7 on this data) and feeds_q "
        "(list_feeds, health only) are the store "
        "calls inside digest_data, timed once more on their own; build_s, render_s = "
        "build_digest, render_digest",
        f"SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average at the end {load_average()}; database in "
        f"{db_path}",
    ]
    if plan:
        notes.append(plan)
    notes += problems + misses
    return SectionReport(
        name=f"{NAME}: {info.items} items, {len(runs)} recipients",
        tables=(
            Table(
                (
                    "recipient",
                    "timezone",
                    "follows",
                    "items",
                    "stories",
                    "bad_feeds",
                    "email_KB",
                    "total_s",
                    "cpu_s",
                    "target",
                    "result",
                ),
                tuple(rows),
                title="one digest per recipient (preview_digest)",
            ),
            Table(
                (
                    "recipient",
                    "data_s",
                    "items_q",
                    "counts_q",
                    "feeds_q",
                    "build_s",
                    "render_s",
                    "sum_s",
                    "sum_cpu_s",
                ),
                tuple(split_rows),
                title="where the time goes (seconds)",
            ),
            Table(("generation phase", "seconds"), generation_rows, title="database generation"),
        ),
        notes=tuple(notes),
        correct=not problems,
        on_target=not misses,
    )
