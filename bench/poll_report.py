"""The poll benchmark's checks and tables: what each cycle must store, whether it did, and
how fast, against the targets of the issue (defined for 1000 x 30, kept at any size).
"""

from __future__ import annotations

import os
import platform
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.proctree import Window
from bench.report import SectionReport, Table, load_average
from bench.server import ServerConfig, ServerInfo, ServerStats
from listener.jobs.poll import parse_processes

NAME = "poll"
COLUMNS = (
    "cycle",
    "feeds",
    "ok",
    "304",
    "failed",
    "items",
    "wall_s",
    "items/s",
    "peak_MB",
    "pss_MB",
    "target",
    "result",
)
CPU_COLUMNS = (
    "cycle",
    "wall_s",
    "poller",
    "workers",
    "server",
    "other",
    "cores_busy",
    "own_cpu/cores",
    "requests",
    "connections",
)
MEMORY_TARGET_MB = 300.0
WALL_TARGETS_S = {"cold": 15.0, "warm": 1.0, "changed": 2.5}  # for 1000 x 30, fixed at any size


@dataclass(frozen=True, slots=True)
class Expected:
    statuses: dict[str, int]
    new: int
    updated: int
    items_after: int


@dataclass(frozen=True, slots=True)
class Cycle:
    name: str
    polled: int
    statuses: Counter[str]
    new: int
    updated: int
    wall_s: float
    window: Window | None
    server: ServerStats
    items_in_db: int
    problems: tuple[str, ...]  # correctness
    misses: tuple[str, ...]  # targets


def difference(after: ServerStats, before: ServerStats) -> ServerStats:
    return ServerStats(
        ok=after.ok - before.ok,
        not_modified=after.not_modified - before.not_modified,
        not_found=after.not_found - before.not_found,
        connections=after.connections - before.connections,
        cpu_s=after.cpu_s - before.cpu_s,
    )


def expected_for(name: str, config: ServerConfig, info: ServerInfo) -> Expected:
    first_items = config.feed_count * config.item_count
    if name == "cold":
        return Expected({"ok": config.feed_count}, first_items, 0, first_items)
    if name == "warm":
        return Expected({"not_modified": config.feed_count}, 0, 0, first_items)
    statuses = {"ok": info.changed_feeds, "not_modified": config.feed_count - info.changed_feeds}
    return Expected(
        {status: count for status, count in statuses.items() if count},
        info.expected_new,
        info.expected_updated,
        first_items + info.expected_new,
    )


def check(
    name: str,
    results: list[Any],
    wall_s: float,
    window: Window | None,
    served: ServerStats,
    items_in_db: int,
    expected: Expected,
) -> Cycle:
    statuses = Counter(result.status for result in results)
    new = sum(result.new for result in results)
    updated = sum(result.updated for result in results)
    problems = []
    if dict(statuses) != expected.statuses:
        problems.append(f"statuses {dict(statuses)} != {expected.statuses}")
    if new != expected.new:
        problems.append(f"new items {new} != {expected.new}")
    if updated != expected.updated:
        problems.append(f"updated items {updated} != {expected.updated}")
    if items_in_db != expected.items_after:
        problems.append(f"items table has {items_in_db} rows, expected {expected.items_after}")
    misses = []
    if wall_s > WALL_TARGETS_S[name]:
        misses.append(f"wall {wall_s:.2f} s > {WALL_TARGETS_S[name]:g} s")
    if window is not None and window.peak_mb > MEMORY_TARGET_MB:
        misses.append(f"peak memory {window.peak_mb:.0f} MB > {MEMORY_TARGET_MB:g} MB")
    return Cycle(
        name=name,
        polled=len(results),
        statuses=statuses,
        new=new,
        updated=updated,
        wall_s=wall_s,
        window=window,
        server=served,
        items_in_db=items_in_db,
        problems=tuple(problems),
        misses=tuple(misses),
    )


def make_report(
    config: ServerConfig,
    info: ServerInfo,
    settings: Any,
    cycles: list[Cycle],
    setup_s: float,
    sample_interval_s: float,
    work_dir: Path,
    classified: str,
) -> SectionReport:
    rows = []
    cpu_rows = []
    for cycle in cycles:
        stored = cycle.new + cycle.updated
        failed = cycle.polled - cycle.statuses["ok"] - cycle.statuses["not_modified"]
        result = "PASS" if not cycle.problems and not cycle.misses else "FAIL"
        if cycle.problems:
            result += " (wrong)"
        window = cycle.window
        rows.append(
            (
                cycle.name,
                str(cycle.polled),
                str(cycle.statuses["ok"]),
                str(cycle.statuses["not_modified"]),
                str(failed),
                str(stored),
                f"{cycle.wall_s:.2f}",
                f"{stored / cycle.wall_s:.0f}" if cycle.wall_s else "-",
                "-" if window is None else f"{window.peak_mb:.0f}",
                "-" if window is None else f"{window.peak_pss_mb:.0f}",
                f"<={WALL_TARGETS_S[cycle.name]:g}s,<={MEMORY_TARGET_MB:g}MB",
                result,
            )
        )
        if window is not None:
            ours = window.poller_cpu_s + window.workers_cpu_s + window.server_cpu_s
            cpu_rows.append(
                (
                    cycle.name,
                    f"{cycle.wall_s:.2f}",
                    f"{window.poller_cpu_s:.2f}",
                    f"{window.workers_cpu_s:.2f}",
                    f"{window.server_cpu_s:.2f}",
                    f"{window.other_cpu_s:.2f}",
                    f"{(ours + window.other_cpu_s) / cycle.wall_s:.2f}" if cycle.wall_s else "-",
                    f"{ours / (os.cpu_count() or 1):.2f}",
                    str(cycle.server.ok + cycle.server.not_modified + cycle.server.not_found),
                    str(cycle.server.connections),
                )
            )
    poll = settings.poll
    workers = parse_processes(poll.parse_workers, os.cpu_count() or 1)
    notes = [
        f"{config.feed_count} feeds x {config.item_count} items, seed {config.seed}: "
        f"{info.body_bytes / 1e6:.1f} MB of feeds generated in {info.generate_s:.1f} s "
        f"(setup {setup_s:.1f} s, not timed); changed cycle: {info.changed_feeds} feeds, "
        f"+{info.expected_new} new, {info.expected_updated} edited items",
        f"server: its own process, {config.hosts} port(s) on 127.0.0.1 (one politeness host "
        f"each), latency {config.latency_ms:g} ms, gzip {'on' if config.gzip else 'off'}",
        f"poller: {workers} parse worker process(es), max_in_flight={poll.limits.max_in_flight}, "
        f"max_per_host={poll.limits.max_per_host}; classification {classified}; "
        "items = new + updated rows written",
        "peak_MB: peak of the summed VmRSS of the poller process and its descendants "
        f"(forkserver, parse workers), sampled every {sample_interval_s * 1000:.0f} ms; shared "
        "pages count once per process, so it is an upper bound, and the target is checked "
        "against it; pss_MB: their summed PSS (shared pages split) at those peaks",
        "CPU seconds per cycle: poller = this process (job thread + fetch threads), workers = "
        "forkserver + parse workers, server = the feed server, other = the rest of the machine "
        "(other jobs: a noisy measurement); cores_busy = all of it / wall; own_cpu/cores = "
        "poller + workers + server over the cores: the wall time this work needs at best on an "
        "idle machine; requests and TCP connections as the server counted them",
        f"SQLite {sqlite3.sqlite_version} (WAL), database in {work_dir}; "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average at the end {load_average()}",
    ]
    monitor_cpu = [cycle.window.monitor_cpu_s for cycle in cycles if cycle.window is not None]
    if monitor_cpu:
        notes.append(
            "the sampler thread itself used "
            + ", ".join(f"{seconds:.2f}" for seconds in monitor_cpu)
            + " s CPU in the three cycles (part of poller)"
        )
    for cycle in cycles:
        notes.extend(f"FAIL {cycle.name}: {problem}" for problem in cycle.problems)
        notes.extend(f"MISS {cycle.name}: {miss}" for miss in cycle.misses)
    tables = [Table(COLUMNS, tuple(rows))]
    if cpu_rows:
        tables.append(
            Table(CPU_COLUMNS, tuple(cpu_rows), title="where the time goes (CPU seconds per cycle)")
        )
    return SectionReport(
        name=f"{NAME}: {config.feed_count} feeds x {config.item_count} items",
        tables=tuple(tables),
        notes=tuple(notes),
        correct=not any(cycle.problems for cycle in cycles),
        on_target=not any(cycle.misses for cycle in cycles),
    )
