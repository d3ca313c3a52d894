"""I/O: the daemon benchmark. The poller's memory over a simulated day of polling.

The real poll job runs in this process as the daemon runs it (`jobs.poll.poll_feeds` on Services
from `app.make_services`, the shipped model loaded, one SQLite connection, parse workers
from a forkserver), once per simulated hour on an injected clock, against
bench/changing_server.py in its own process:

cycle 1      every feed is new: N x M items fetched, parsed, classified and stored
cycles 2-24  before each, a fresh ~5% of the feeds publish a new version (2 new items, one
             edited); the rest answer 304
             after each poll, the refine job (`jobs.refine.refine_job`) as the daemon runs it:
             at most classifier.refine_max_items of the uncertain items re-scored by the
             second stage, whose sentence model is unmapped at the end of the run
digest       then `jobs.digest.send_due_digests` at the default recipient's send time the
             next morning: the day's digest, built and written to the outbox in the work dir

After each step the memory of this process (VmRSS, its anonymous and file-backed parts,
PSS) and of its process tree (with the forkserver and the resource tracker; the parse
workers exit with each cycle) is read from /proc; during each cycle bench.proctree samples
the tree's peak (the parse workers included).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.changing_server import ChangingFeedServer, Round
from bench.daemon_report import NAME as NAME  # the section's name, for bench.__main__
from bench.daemon_report import Memory, Step, make_report
from bench.harness import log_to, open_services, poll_overrides, server_config
from bench.proctree import TreeMonitor
from bench.report import SectionReport
from bench.server import ServerConfig

# Local midnight in Paris (the default recipient's zone): the 24 hourly cycles are its day.
DAY_STARTS_AT = datetime(2026, 11, 19, 23, 0, tzinfo=UTC)
DIGEST_DAY = date(2026, 11, 21)  # the digest sent that morning covers the polled day
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "daemon",
        "memory over a day of polling (section 'daemon'; also uses --feeds, --items, "
        "--hosts, --gzip, --parse-workers, --max-in-flight, --max-per-host, --classify, "
        "--log-level)",
    )
    group.add_argument(
        "--daemon-cycles", type=int, default=24, help="hourly poll cycles (default 24: a day)"
    )
    group.add_argument(
        "--daemon-changed-fraction",
        type=float,
        default=0.05,
        help="share of the feeds with a new version before each cycle after the first "
        "(default 0.05)",
    )


def run(options: argparse.Namespace, work_dir: Path) -> SectionReport:
    from listener.config import parse_settings

    config = server_config(options, options.daemon_changed_fraction)
    db_path = work_dir / "daemon.db"
    outbox = work_dir / "outbox"
    settings = parse_settings(
        {
            "database": str(db_path),
            "import_opml_on_init": "",
            "poll": poll_overrides(options),
            "digest": {"outbox": str(outbox)},
        },
        {},
    )
    before = read_memory(os.getpid(), exclude=None)
    with (
        ChangingFeedServer(config) as server,
        TreeMonitor(server=server.pid) as monitor,
        (work_dir / "daemon.log").open("w", encoding="utf-8") as log_file,
    ):
        log_to(log_file, options.log_level)
        store, services, classified = open_services(
            settings, db_path, options.classify, refine=True
        )
        try:
            with store.db.atomic():
                for url in server.info.urls:
                    store.add_feed(url, now=DAY_STARTS_AT, tags=("bench",))
            started = read_memory(os.getpid(), exclude=server.pid)
            steps = []
            for cycle in range(1, max(1, options.daemon_cycles) + 1):
                steps.append(_run_cycle(cycle, services, server, monitor, config, options))
            steps.append(_run_digest(services, server.pid, outbox))
        finally:
            services.fetcher.close()
            store.close()
    return make_report(
        config, server.info, settings, steps, before, started, monitor.interval_s, classified
    )


def _run_cycle(
    cycle: int,
    services: Any,
    server: ChangingFeedServer,
    monitor: TreeMonitor,
    config: ServerConfig,
    options: argparse.Namespace,
) -> Step:
    from listener.jobs.poll import poll_feeds
    from listener.jobs.refine import refine_job

    now = DAY_STARTS_AT + timedelta(hours=cycle - 1)
    if cycle == 1:
        expected = Round(
            feeds=config.feed_count, new=config.feed_count * config.item_count, updated=0
        )
    else:
        expected = server.advance(cycle, options.daemon_changed_fraction)
    monitor.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    results = poll_feeds(services, now, all_feeds=True)
    wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    refine_wall = time.perf_counter()
    refined = refine_job(services, now)
    refine_s = time.perf_counter() - refine_wall
    window = monitor.finish()
    memory = read_memory(os.getpid(), exclude=server.pid)
    statuses = Counter(result.status for result in results)
    new = sum(result.new for result in results)
    updated = sum(result.updated for result in results)
    problems = []
    wanted = {"ok": expected.feeds, "not_modified": config.feed_count - expected.feeds}
    if dict(statuses) != {status: n for status, n in wanted.items() if n}:
        problems.append(f"statuses {dict(statuses)}, expected {wanted}")
    if (new, updated) != (expected.new, expected.updated):
        problems.append(f"new/updated {new}/{updated}, expected {expected.new}/{expected.updated}")
    return Step(
        name=str(cycle),
        clock=now,
        statuses=statuses,
        new=new,
        updated=updated,
        items_in_db=services.store.counts()["items"],
        wall_s=wall_s,
        cpu_s=cpu_s,
        memory=memory,
        window=window,
        problems=tuple(problems),
        refined=refined,
        refine_s=refine_s,
    )


def _run_digest(services: Any, server_pid: int, outbox: Path) -> Step:
    from listener.digest.periods import digest_period
    from listener.jobs.digest import send_due_digests

    settings = services.settings
    recipient = settings.recipients[0]
    now = digest_period(recipient, DIGEST_DAY).send_at + timedelta(minutes=1)
    wall, cpu = time.perf_counter(), time.process_time()
    outcomes = send_due_digests(services.store, settings, now)
    wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    memory = read_memory(os.getpid(), exclude=server_pid)
    problems = [
        f"digest {outcome.recipient} {outcome.status} ({outcome.reason})"
        for outcome in outcomes
        if outcome.status != "sent"
    ]
    if not problems and not any(outbox.glob("*.eml")):
        problems.append(f"no email in {outbox}")
    return Step(
        name="digest",
        clock=now,
        statuses=Counter(outcome.status for outcome in outcomes),
        new=sum(outcome.items for outcome in outcomes),  # the digests' items
        updated=0,
        items_in_db=services.store.counts()["items"],
        wall_s=wall_s,
        cpu_s=cpu_s,
        memory=memory,
        window=None,
        problems=tuple(problems),
    )


def read_memory(root: int, *, exclude: int | None) -> Memory:
    """This process's memory from /proc, and its tree's (minus `exclude`'s subtree)."""
    status = _status_kb(root)
    pids = _tree(root, exclude)
    tree_rss_kb = 0
    tree_pss_kb = 0
    for pid in pids:
        statm = _read(f"/proc/{pid}/statm")
        if statm is not None:
            tree_rss_kb += int(statm.split()[1]) * _PAGE_KB
        tree_pss_kb += _pss_kb(pid)
    return Memory(
        rss_mb=status.get("VmRSS", 0) / 1024,
        hwm_mb=status.get("VmHWM", 0) / 1024,
        anon_mb=status.get("RssAnon", 0) / 1024,
        file_mb=status.get("RssFile", 0) / 1024,
        pss_mb=_pss_kb(root) / 1024,
        tree_rss_mb=tree_rss_kb / 1024,
        tree_pss_mb=tree_pss_kb / 1024,
        processes=len(pids),
    )


def _status_kb(pid: int) -> dict[str, int]:
    text = _read(f"/proc/{pid}/status") or b""
    values = {}
    for line in text.decode().splitlines():
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0])
    return values


def _pss_kb(pid: int) -> int:
    text = _read(f"/proc/{pid}/smaps_rollup")
    start = -1 if text is None else text.find(b"\nPss:")
    if text is None or start < 0:
        return 0
    return int(text[start + 5 :].split(None, 1)[0])


def _tree(root: int, exclude: int | None) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read(f"{entry.path}/stat")
        if stat is None:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split(b" ", 2)[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found = [root]
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), ()):
            if child != exclude:
                found.append(child)
                queue.append(child)
    return found


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None
