"""I/O: the watches benchmark. Matching 50 watches against items, and the backfill of a new
watch over a large generated database.

matching  bench/watch_corpus.py's 50 invented watches (every form of the query language,
          accents, feed-tag scopes, 3 topics on common words) through
          `WatchMatcher.match_item` over English and French items from bench/texts.py, 8%
          of which mention a watch: summaries of 100-400 words (the classify section's
          items) and of 25-80 words (a lead paragraph, as in the backfill's database); in
          this process, one core, best of --watch-repeat runs by CPU time. Then where the
          time goes, on part of the long items: tokenizing alone, the 47 name watches, each
          topic watch alone.
checks    every injected mention is found (in its watch's scope); on a sample, the matcher
          agrees, terms included, with `watches.query.match` run one query at a time
backfill  a database of --watch-items items (bench/digest_db.py, full-text index left empty)
          reopened with `open_store`, one watch added with `save_watch`, then
          `backfill_watches` end to end, timed; then its cursor and, on a sample of items, its
          mentions against `match`. Then (--watch-spikes run) the 50 watches are added and
          backfilled, and `check_spikes` runs over the 51.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.digest_db import DbConfig, generate_database
from bench.harness import log_to
from bench.report import SectionReport
from bench.watch_corpus import BenchItem, BenchWatch, make_bench_items, make_watches
from bench.watches_report import (
    LENGTHS,
    MENTION_FRACTION,
    PARTS_ITEMS,
    TARGET_ITEMS_PER_CPU_S,
    Backfill,
    Check,
    Pass,
    make_report,
)

NAME = "watches"

BACKFILL_SAMPLE = 2000  # random item ids whose mentions are checked against `match`
BACKFILL_WATCH = "bench: new watch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("watches", "watch matching and backfill (section 'watches')")
    group.add_argument(
        "--watch-items",
        type=int,
        default=1_000_000,
        help="items in the backfill's generated database (default 1000000; 50000 for a quick run)",
    )
    group.add_argument(
        "--watch-match-items",
        type=int,
        default=20_000,
        help="items per language and summary length for the matching runs (default 20000)",
    )
    group.add_argument(
        "--watch-repeat",
        type=int,
        default=3,
        help="timed matching runs; the least CPU time is kept (default 3)",
    )
    group.add_argument(
        "--watch-sample",
        type=int,
        default=500,
        help="items per summary length checked against watches.query.match (default 500)",
    )
    group.add_argument(
        "--watch-query",
        default="télétravail",
        help="the backfilled watch's query (default: télétravail, a word of the generated "
        "French text)",
    )
    group.add_argument(
        "--watch-spikes",
        choices=("run", "skip"),
        default="run",
        help="after the backfill, add and backfill the 50 watches, then time check_spikes "
        "(default run)",
    )


def run(options: argparse.Namespace, work_dir: Path) -> SectionReport:
    from listener.watches.matcher import ActiveWatch
    from listener.watches.query import parse_query

    watches = make_watches(options.seed)
    active = [
        ActiveWatch(index + 1, w.name, 1, parse_query(w.query), w.tags)
        for index, w in enumerate(watches)
    ]
    rows: list[tuple[str, ...]] = []
    checks: list[Check] = []
    parts: list[Pass] = []
    generate_s = 0.0
    repeat = max(1, options.watch_repeat)
    for length in LENGTHS:
        started = time.perf_counter()
        items = make_bench_items(
            options.seed, watches, options.watch_match_items, length, MENTION_FRACTION
        )
        generate_s += time.perf_counter() - started
        by_lang = [[item for item in items if item.lang == lang] for lang in ("en", "fr")]
        results: list[dict[int, tuple[str, ...]]] = []  # in the items' order
        for chunk in by_lang:
            run, found = _best_pass(active, chunk, repeat, chunk[0].lang if chunk else "-")
            rows.append(_match_row(length, chunk, run))
            results += found
        checks += _check_matching(watches, active, items, results, length, options)
        if length == LENGTHS[0]:
            parts = _parts(watches, active, [i for c in by_lang for i in c[:PARTS_ITEMS]], repeat)
    del items, by_lang, results  # not in the backfill's memory
    with (work_dir / "watches.log").open("w", encoding="utf-8") as log_file:
        log_to(log_file)
        try:
            backfill = _run_backfill(options, work_dir / "watches.db", watches)
        finally:
            log_to(sys.stderr)
    return make_report(options, rows, parts, checks, backfill, generate_s)


def _best_pass(
    active: Sequence[Any], items: Sequence[BenchItem], repeat: int, label: str
) -> tuple[Pass, list[dict[int, tuple[str, ...]]]]:
    """The run with the least CPU time, and what the matcher found (the same every run)."""
    from listener.watches.matcher import WatchMatcher

    match_item = WatchMatcher(active).match_item
    for item in items[:500]:  # warm-up, not timed
        match_item(item.title, item.summary, item.feed_tags)
    times = []
    found: list[dict[int, tuple[str, ...]]] = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        found = [match_item(i.title, i.summary, i.feed_tags) for i in items]
        times.append((time.process_time() - cpu, time.perf_counter() - wall))
    cpu_s, wall_s = min(times)
    matched = sum(1 for terms in found if terms)
    return Pass(label, len(items), wall_s, cpu_s, matched, sum(map(len, found))), found


def _best_tokenize(items: Sequence[BenchItem], repeat: int) -> Pass:
    from listener.watches.query import tokenize_text

    times = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        for item in items:
            tokenize_text(f"{item.title} {item.summary}")
        times.append((time.process_time() - cpu, time.perf_counter() - wall))
    cpu_s, wall_s = min(times)
    return Pass("tokenize_text(title + summary) only", len(items), wall_s, cpu_s, 0, 0)


def _match_row(length: tuple[int, int], items: Sequence[BenchItem], run: Pass) -> tuple[str, ...]:
    return (
        f"{length[0]}-{length[1]}",
        run.label,
        str(run.items),
        str(sum(1 for item in items if item.watch is not None)),
        str(run.matched_items),
        str(run.matches),
        f"{run.wall_s:.2f}",
        f"{run.cpu_s:.2f}",
        f"{run.items / run.wall_s:.0f}" if run.wall_s else "-",
        f"{run.per_cpu_s:.0f}",
        f">={TARGET_ITEMS_PER_CPU_S:.0f}/cpu_s",
        "PASS" if run.per_cpu_s >= TARGET_ITEMS_PER_CPU_S else "MISS",
    )


def _parts(
    watches: Sequence[BenchWatch], active: Sequence[Any], items: Sequence[BenchItem], repeat: int
) -> list[Pass]:
    """Tokenizing only, the name watches, each topic watch alone, all of them."""
    names = [a for a, w in zip(active, watches, strict=True) if w.form != "topic"]
    runs = [(names, f"the {len(names)} name watches")]
    runs += [
        ([a], f"{w.query} (alone)")
        for a, w in zip(active, watches, strict=True)
        if w.form == "topic"
    ]
    runs.append((list(active), f"all {len(active)} watches"))
    return [_best_tokenize(items, repeat)] + [
        _best_pass(group, items, repeat, label)[0] for group, label in runs
    ]


def _check_matching(
    watches: Sequence[BenchWatch],
    active: Sequence[Any],
    items: Sequence[BenchItem],
    results: Sequence[dict[int, tuple[str, ...]]],
    length: tuple[int, int],
    options: argparse.Namespace,
) -> list[Check]:
    from listener.watches.query import match, tokenize_text

    words = f"{length[0]}-{length[1]} words"

    def example(index: int) -> str:
        item = items[index]
        watch = watches[item.watch] if item.watch is not None else None
        return f"item {index}, watch {watch.query if watch else '-'!r}, {item.title[:50]!r}"

    musts = [i for i, item in enumerate(items) if item.expected]
    lost = [i for i in musts if _watch_id(items[i]) not in results[i]]
    nots = [i for i, item in enumerate(items) if item.expected is False]
    wrong = [i for i in nots if _watch_id(items[i]) in results[i]]
    rng = random.Random(f"{options.seed}:watch-sample:{words}")
    injected = [i for i, item in enumerate(items) if item.watch is not None]
    others = [i for i, item in enumerate(items) if item.watch is None]
    sample = rng.sample(injected, min(options.watch_sample // 2, len(injected)))
    sample += rng.sample(others, min(options.watch_sample - len(sample), len(others)))
    differ = []
    for index in sample:
        item = items[index]
        tokens = tokenize_text(f"{item.title} {item.summary}")
        reference = {
            watch.id: terms
            for watch in active
            if not watch.tags or set(watch.tags) & set(item.feed_tags)
            if (terms := match(watch.query, tokens)) is not None
        }
        if reference != results[index]:
            differ.append(f"{example(index)}: match {reference}, match_item {results[index]}")
    return [
        Check(
            f"injected mentions found ({words})",
            f"{len(musts) - len(lost)}/{len(musts)}",
            "all",
            not lost,
            f"not found: {example(lost[0])}" if lost else "",
        ),
        Check(
            f"near misses, out-of-scope mentions matched ({words})",
            f"{len(wrong)}/{len(nots)}",
            "0",
            not wrong,
            f"matched: {example(wrong[0])}" if wrong else "",
        ),
        Check(
            f"match_item == match one query at a time ({words}, terms too)",
            f"{len(differ)}/{len(sample)} items differ",
            "0",
            not differ,
            differ[0] if differ else "",
        ),
    ]


def _watch_id(item: BenchItem) -> int:
    """The ActiveWatch id of the watch mentioned in the item (ids start at 1), or 0."""
    return 0 if item.watch is None else item.watch + 1


def _run_backfill(
    options: argparse.Namespace, db_path: Path, watches: Sequence[BenchWatch]
) -> Backfill:
    from listener.domain import Watch
    from listener.jobs.watches import backfill_watches, count_to_backfill
    from listener.store import open_store
    from listener.store.migrations import migrations

    config = DbConfig(options.watch_items, feeds=1000, days=60, seed=options.seed, fts="skip")
    started = time.perf_counter()
    generate_database(db_path, config)
    generate_s = time.perf_counter() - started
    db_mb = sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*")) / 2**20
    store = open_store(db_path)
    try:
        migrated = not migrations.pending(store.db) and {"watches", "mentions"} <= set(
            store.db.table_names()
        )
        checks = [
            Check(
                "open_store: no migration pending, watches + mentions tables",
                "yes" if migrated else "no",
                "yes",
                migrated,
            )
        ]
        store.save_watch(
            Watch(BACKFILL_WATCH, options.watch_query, "topic"), origin="cli", now=config.end_at
        )
        newest = store.max_item_id()
        pending = count_to_backfill(store)
        batches: list[int] = []
        rss_before = _reset_peak_rss()
        wall, cpu = time.perf_counter(), time.process_time()
        read = backfill_watches(store, on_batch=batches.append)
        wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        peak = _peak_rss_mb()
        row = next(r for r in store.list_watches() if r.name == BACKFILL_WATCH)
        mentions = _count(store, "SELECT count(*) FROM mentions WHERE watch_id = ?", row.id)
        checks.append(
            Check(
                "count_to_backfill before, items read by the backfill",
                f"{pending}, {read}",
                f"{newest}, {newest}",
                pending == read == newest,
            )
        )
        checks.append(
            Check(
                "watches.matched_through == max(items.id)",
                str(row.matched_through),
                str(newest),
                row.matched_through == newest,
            )
        )
        checks.append(_check_mentions(store, row.id, options.watch_query, newest, options.seed))
        more: tuple[tuple[str, float, str], ...] = ()
        if options.watch_spikes == "run":
            more, caught_up = _more(store, watches, config.end_at, newest)
            checks.append(caught_up)
    finally:
        store.close()
    return Backfill(
        items=newest,
        query=options.watch_query,
        mentions=mentions,
        wall_s=wall_s,
        cpu_s=cpu_s,
        rss_before_mb=rss_before,
        peak_rss_mb=peak,
        batches=len(batches),
        generate_s=generate_s,
        db_mb=db_mb,
        checks=tuple(checks),
        more=more,
    )


def _check_mentions(store: Any, watch_id: int, query: str, newest: int, seed: int) -> Check:
    """Random items, and some of the watch's mentions: stored terms == `match` on the item."""
    from listener.watches.query import match, parse_query, tokenize_text

    rng = random.Random(f"{seed}:backfill-sample")
    ids = set(rng.sample(range(1, newest + 1), min(BACKFILL_SAMPLE, newest)))
    sql = "SELECT item_id FROM mentions WHERE watch_id = ?"
    mentioned = [row[0] for row in store.db.execute(sql, [watch_id])]
    ids.update(rng.sample(mentioned, min(BACKFILL_SAMPLE // 4, len(mentioned))))
    parsed = parse_query(query)
    differ = []
    for item_id in sorted(ids):
        title, summary = store.db.execute(
            "SELECT title, summary FROM items WHERE id = ?", [item_id]
        ).fetchone()
        stored = store.db.execute(
            "SELECT terms FROM mentions WHERE watch_id = ? AND item_id = ?", [watch_id, item_id]
        ).fetchone()
        found = tuple(json.loads(stored[0])) if stored else None
        expected = match(parsed, tokenize_text(f"{title} {summary}"))
        if found != expected:
            differ.append(f"item {item_id}: stored {found}, match {expected}")
    return Check(
        "mentions stored == match on sampled items (terms too)",
        f"{len(differ)}/{len(ids)} items differ",
        "0",
        not differ,
        differ[0] if differ else "",
    )


def _more(
    store: Any, watches: Sequence[BenchWatch], now: datetime, newest: int
) -> tuple[tuple[tuple[str, float, str], ...], Check]:
    """The 50 watches added to the big database and backfilled, then one spike check."""
    from listener.config import parse_settings
    from listener.domain import Watch
    from listener.jobs.alerts import check_spikes
    from listener.jobs.watches import backfill_watches

    for w in watches:
        store.save_watch(Watch(w.name, w.query, w.kind, w.tags), origin="cli", now=now)
    wall = time.perf_counter()
    read = backfill_watches(store)
    backfill_s = time.perf_counter() - wall
    sql = "SELECT count(*) FROM mentions JOIN watches ON watches.id = watch_id WHERE name != ?"
    count = _count(store, sql, BACKFILL_WATCH)
    rows = store.list_watches()
    caught_up = sum(1 for row in rows if row.matched_through == newest)
    settings = parse_settings({"database": str(store.path), "import_opml_on_init": ""}, {})
    wall = time.perf_counter()
    opened = check_spikes(store, settings, now)
    spikes_s = time.perf_counter() - wall
    steps = (
        (
            f"backfill_watches, the {len(watches)} watches added",
            backfill_s,
            f"{read} items read, {count} mentions",
        ),
        (f"check_spikes over the {len(rows)} watches", spikes_s, f"{opened} spikes opened"),
    )
    check = Check(
        "watches caught up before check_spikes (else it skips them)",
        f"{caught_up}/{len(rows)}",
        f"{len(rows)}/{len(rows)}",
        caught_up == len(rows),
    )
    return steps, check


def _count(store: Any, sql: str, *params: Any) -> int:
    return int(store.db.execute(sql, list(params)).fetchone()[0])


def _reset_peak_rss() -> float | None:
    """Reset this process's VmHWM (Linux: clear_refs 5) and return its current RSS in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_mb("VmRSS:")


def _peak_rss_mb() -> float | None:
    return _status_mb("VmHWM:")


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
