"""I/O: the poll benchmark. Three cycles of `jobs.poll_feeds` against the generated feeds.

cold     every feed is new: fetch, parse (worker processes), store N x M items
warm     nothing changed: every feed answers 304 to its ETag
changed  a fraction of the feeds has a new version: a few new items and one edited item

All three run in this process, one after the other, on the same Services, so "warm" is
measured without interpreter start-up, as the daemon would see it. The feed server runs in
another process (see bench/server.py); on a 2-core machine it still shares the cores with
the poller and its parse workers, so its CPU time is reported next to each cycle.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import sqlite3
import time
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bench.proctree import TreeMonitor, Window
from bench.profiling import py_spy, summarize
from bench.report import SectionReport, Table
from bench.server import FeedServer, ServerConfig, ServerInfo, ServerStats

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("poll", "fetch + parse + store cycles (section 'poll')")
    group.add_argument("--feeds", type=int, default=1000, help="feeds to serve (default 1000)")
    group.add_argument("--items", type=int, default=30, help="items per feed (default 30)")
    group.add_argument(
        "--latency-ms", type=float, default=0.0, help="server delay per response (default 0)"
    )
    group.add_argument(
        "--changed-fraction",
        type=float,
        default=0.1,
        help="share of feeds with a new version in the third cycle (default 0.1)",
    )
    group.add_argument(
        "--hosts",
        type=int,
        default=16,
        help="ports on 127.0.0.1 the feeds are spread over; each is one host for the "
        "max_per_host politeness limit (default 16; 1 puts every feed on one host)",
    )
    group.add_argument("--gzip", action="store_true", help="serve gzip when asked for")
    group.add_argument(
        "--parse-workers", type=int, help="poll.parse_workers (default: the setting, 0 = cores)"
    )
    group.add_argument("--max-in-flight", type=int, help="poll.max_in_flight (default: setting)")
    group.add_argument("--max-per-host", type=int, help="poll.max_per_host (default: setting)")
    group.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="listener's log level; logs go to poll.log in the work dir (default INFO)",
    )
    group.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each cycle with py-spy into DIR (<cycle>.txt, <cycle>.summary.txt); "
        "timings are then inflated by the sampling",
    )


@dataclass(frozen=True, slots=True)
class _Expected:
    statuses: dict[str, int]
    new: int
    updated: int
    items_after: int


@dataclass(frozen=True, slots=True)
class _Cycle:
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


def run(options: argparse.Namespace, work_dir: Path) -> SectionReport:
    # Imported here: the other sections (and --help) need not pay for listener's imports.
    from listener.cli import make_services
    from listener.config import parse_settings
    from listener.jobs import poll_feeds
    from listener.logs import configure_logging
    from listener.store import open_store

    config = ServerConfig(
        feed_count=options.feeds,
        item_count=options.items,
        seed=options.seed,
        changed_fraction=options.changed_fraction,
        latency_ms=options.latency_ms,
        hosts=max(1, min(options.hosts, options.feeds)),
        gzip=options.gzip,
    )
    db_path = work_dir / "bench.db"
    settings = parse_settings(
        {"database": str(db_path), "import_opml_on_init": "", "poll": _poll_overrides(options)},
        {},
    )
    started = time.perf_counter()
    with (
        FeedServer(config) as server,
        TreeMonitor(server=server.pid) as monitor,
        (work_dir / "poll.log").open("w", encoding="utf-8") as log_file,
    ):
        _configure_logs(configure_logging, options.log_level, log_file)
        info = server.info
        store = open_store(db_path)
        services = make_services(settings, store)
        try:
            now = datetime.now(UTC)
            with store.db.atomic():
                for url in info.urls:
                    store.add_feed(url, now=now, tags=("bench",))
            setup_s = time.perf_counter() - started
            cycles = []
            for name in ("cold", "warm", "changed"):
                if name == "changed":
                    server.change()
                expected = _expected(name, config, info, cycles)
                before = server.stats()
                with _profiled(options.profile, name):
                    monitor.reset()
                    wall_started = time.perf_counter()
                    results = poll_feeds(services, datetime.now(UTC), all_feeds=True)
                    wall_s = time.perf_counter() - wall_started
                    window = monitor.finish()
                served = _difference(server.stats(), before)
                items_in_db = store.counts()["items"]
                cycles.append(_check(name, results, wall_s, window, served, items_in_db, expected))
        finally:
            services.client.close()
            store.close()
    report = _report(config, info, settings, cycles, setup_s, monitor, work_dir)
    if options.profile:
        for cycle in cycles:
            raw = options.profile / f"{NAME}-{cycle.name}.txt"
            summary = raw.with_suffix(".summary.txt")
            summary.write_text("\n".join(summarize(raw, server_pid=info.pid)) + "\n")
        notes = (*report.notes, f"profiles (py-spy; timings inflated): {options.profile}")
        report = dataclasses.replace(report, notes=notes)
    return report


def _profiled(directory: Path | None, cycle: str) -> AbstractContextManager[None]:
    if directory is None:
        return nullcontext()
    directory.mkdir(parents=True, exist_ok=True)
    return py_spy(directory / f"{NAME}-{cycle}.txt")


def _difference(after: ServerStats, before: ServerStats) -> ServerStats:
    return ServerStats(
        ok=after.ok - before.ok,
        not_modified=after.not_modified - before.not_modified,
        not_found=after.not_found - before.not_found,
        connections=after.connections - before.connections,
        cpu_s=after.cpu_s - before.cpu_s,
    )


def _poll_overrides(options: argparse.Namespace) -> dict[str, Any]:
    names = {
        "parse_workers": options.parse_workers,
        "max_in_flight": options.max_in_flight,
        "max_per_host": options.max_per_host,
    }
    return {name: value for name, value in names.items() if value is not None}


def _configure_logs(configure_logging: Any, level: str, log_file: TextIO) -> None:
    """As the daemon logs (JSON lines, one per feed), but to a file: stdout is the table."""
    configure_logging("json", level)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log_file)


def _expected(name: str, config: ServerConfig, info: ServerInfo, done: list[_Cycle]) -> _Expected:
    first_items = config.feed_count * config.item_count
    if name == "cold":
        return _Expected({"ok": config.feed_count}, first_items, 0, first_items)
    if name == "warm":
        return _Expected({"not_modified": config.feed_count}, 0, 0, first_items)
    statuses = {"ok": info.changed_feeds, "not_modified": config.feed_count - info.changed_feeds}
    return _Expected(
        {status: count for status, count in statuses.items() if count},
        info.expected_new,
        info.expected_updated,
        first_items + info.expected_new,
    )


def _check(
    name: str,
    results: list[Any],
    wall_s: float,
    window: Window | None,
    served: ServerStats,
    items_in_db: int,
    expected: _Expected,
) -> _Cycle:
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
    return _Cycle(
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


def _report(
    config: ServerConfig,
    info: ServerInfo,
    settings: Any,
    cycles: list[_Cycle],
    setup_s: float,
    monitor: TreeMonitor,
    work_dir: Path,
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
    workers = poll.parse_workers or os.cpu_count() or 1
    notes = [
        f"{config.feed_count} feeds x {config.item_count} items, seed {config.seed}: "
        f"{info.body_bytes / 1e6:.1f} MB of feeds generated in {info.generate_s:.1f} s "
        f"(setup {setup_s:.1f} s, not timed); changed cycle: {info.changed_feeds} feeds, "
        f"+{info.expected_new} new, {info.expected_updated} edited items",
        f"server: its own process, {config.hosts} port(s) on 127.0.0.1 (one politeness host "
        f"each), latency {config.latency_ms:g} ms, gzip {'on' if config.gzip else 'off'}",
        f"poller: parse_workers={workers}, max_in_flight={poll.max_in_flight}, "
        f"max_per_host={poll.max_per_host}; items = new + updated rows written",
        "peak_MB: peak of the summed VmRSS of the poller process and its descendants "
        f"(forkserver, parse workers), sampled every {monitor.interval_s * 1000:.0f} ms; shared "
        "pages count once per process, so it is an upper bound, and the target is checked "
        "against it; pss_MB: their summed PSS (shared pages split) at those peaks",
        "CPU seconds per cycle: poller = this process (job thread + fetch threads), workers = "
        "forkserver + parse workers, server = the feed server, other = the rest of the machine "
        "(other jobs: a noisy measurement); cores_busy = all of it / wall; own_cpu/cores = "
        "poller + workers + server over the cores: the wall time this work needs at best on an "
        "idle machine; requests and TCP connections as the server counted them",
        f"SQLite {sqlite3.sqlite_version} (WAL), database in {work_dir}; "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average at the end {_load_average()}",
    ]
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


def _load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"
