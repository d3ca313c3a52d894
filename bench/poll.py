"""I/O: the poll benchmark. Three cycles of `jobs.poll.poll_feeds` against the generated feeds.

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
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import log_to, open_services, poll_overrides, server_config
from bench.poll_report import NAME as NAME  # the section's name, for bench.__main__
from bench.poll_report import Cycle, check, difference, expected_for, make_report
from bench.proctree import TreeMonitor
from bench.profiling import py_spy, summarize
from bench.report import SectionReport
from bench.server import FeedServer


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
        "--parse-workers", type=int, help="poll.parse_workers (default: the setting; 0 = cores - 1)"
    )
    group.add_argument("--max-in-flight", type=int, help="poll.max_in_flight (default: setting)")
    group.add_argument("--max-per-host", type=int, help="poll.max_per_host (default: setting)")
    group.add_argument(
        "--classify",
        choices=("auto", "on", "off"),
        default="auto",
        help="classify new items during the poll, as the daemon does (auto: when the model "
        "file exists; default auto)",
    )
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


def run(options: argparse.Namespace, work_dir: Path) -> SectionReport:
    # Imported here: the other sections (and --help) need not pay for listener's imports.
    from listener.config import parse_settings
    from listener.jobs.poll import poll_feeds

    config = server_config(options, options.changed_fraction)
    db_path = work_dir / "bench.db"
    settings = parse_settings(
        {"database": str(db_path), "import_opml_on_init": "", "poll": poll_overrides(options)},
        {},
    )
    started = time.perf_counter()
    with (
        FeedServer(config) as server,
        TreeMonitor(server=server.pid) as monitor,
        (work_dir / "poll.log").open("w", encoding="utf-8") as log_file,
    ):
        log_to(log_file, options.log_level)
        info = server.info
        store, services, classified = open_services(settings, db_path, options.classify)
        try:
            now = datetime.now(UTC)
            with store.db.atomic():
                for url in info.urls:
                    store.add_feed(url, now=now, tags=("bench",))
            setup_s = time.perf_counter() - started
            cycles = [
                _run_cycle(name, poll_feeds, services, server, monitor, options.profile)
                for name in ("cold", "warm", "changed")
            ]
        finally:
            services.fetcher.close()
            store.close()
    report = make_report(
        config, info, settings, cycles, setup_s, monitor.interval_s, work_dir, classified
    )
    if options.profile:
        for cycle in cycles:
            raw = options.profile / f"{NAME}-{cycle.name}.txt"
            summary = raw.with_suffix(".summary.txt")
            summary.write_text("\n".join(summarize(raw, server_pid=info.pid)) + "\n")
        notes = (*report.notes, f"profiles (py-spy; timings inflated): {options.profile}")
        report = dataclasses.replace(report, notes=notes)
    return report


def _run_cycle(
    name: str,
    poll_feeds: Any,
    services: Any,
    server: FeedServer,
    monitor: TreeMonitor,
    profile: Path | None,
) -> Cycle:
    """One timed poll_feeds call over every feed, then the checks of its results."""
    if name == "changed":
        server.change()
    before = server.stats()
    with _profiled(profile, name):
        monitor.reset()
        wall_started = time.perf_counter()
        results = poll_feeds(services, datetime.now(UTC), all_feeds=True)
        wall_s = time.perf_counter() - wall_started
        window = monitor.finish()
    served = difference(server.stats(), before)
    items_in_db = services.store.counts()["items"]
    expected = expected_for(name, server.config, server.info)
    return check(name, results, wall_s, window, served, items_in_db, expected)


def _profiled(directory: Path | None, cycle: str) -> AbstractContextManager[None]:
    if directory is None:
        return nullcontext()
    directory.mkdir(parents=True, exist_ok=True)
    return py_spy(directory / f"{NAME}-{cycle}.txt")
