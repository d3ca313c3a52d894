"""The daemon benchmark's steps and tables: what each poll cycle stored, whether it was what
the server changed, and the memory of the poller after each step, against the target."""

from __future__ import annotations

import os
import platform
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.proctree import Window
from bench.report import SectionReport, Table, load_average
from bench.server import ServerConfig, ServerInfo
from listener.jobs.poll import parse_processes

NAME = "daemon"
TARGET_MB = 300.0
COLUMNS = (
    "step",
    "clock",
    "ok",
    "304",
    "failed",
    "new",
    "updated",
    "items_db",
    "wall_s",
    "cpu_s",
    "refined",
    "refine_s",
    "rss_MB",
    "anon_MB",
    "pss_MB",
    "tree_pss_MB",
    "peak_tree_MB",
    "peak_pss_MB",
    "check",
)


@dataclass(frozen=True, slots=True)
class Memory:
    """One reading: this process (the poller) and its tree, the feed server excluded."""

    rss_mb: float  # VmRSS
    hwm_mb: float  # VmHWM: the kernel's record of the highest VmRSS so far
    anon_mb: float  # RssAnon: the heap (Python objects, numpy arrays, SQLite's cache)
    file_mb: float  # RssFile: mapped files (the interpreter, .so libraries)
    pss_mb: float
    tree_rss_mb: float  # summed VmRSS: shared pages counted once per process
    tree_pss_mb: float  # summed PSS: shared pages split between their users
    processes: int


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    clock: datetime
    statuses: Counter[str]
    new: int  # for the digest step: the items in the digests sent
    updated: int
    items_in_db: int
    wall_s: float
    cpu_s: float  # this process
    memory: Memory  # after the step
    window: Window | None  # sampled during the step (poll cycles)
    problems: tuple[str, ...]
    refined: int = 0  # items the refine job re-scored after the poll
    refine_s: float = 0.0  # its wall time (not in wall_s, which is the poll's)


def make_report(
    config: ServerConfig,
    info: ServerInfo,
    settings: Any,
    steps: list[Step],
    before: Memory,
    started: Memory,
    sample_interval_s: float,
    classified: str,
) -> SectionReport:
    rows = [_step_row(step) for step in steps]
    cycles = [step for step in steps if step.window is not None]
    final = steps[-1].memory
    summary = []
    misses = []

    def measure(label: str, values: list[float], final_value: float, checked: bool) -> None:
        top = max(values, default=0.0)
        result = "-"
        if checked:
            result = "PASS" if top <= TARGET_MB else "FAIL"
            if top > TARGET_MB:
                misses.append(f"MISS {label}: max {top:.0f} MB > {TARGET_MB:g} MB")
        target = f"<={TARGET_MB:g}MB" if checked else "(info)"
        summary.append((label, f"{top:.0f}", f"{final_value:.0f}", target, result))

    measure("poller VmRSS after each step", [s.memory.rss_mb for s in steps], final.rss_mb, True)
    measure(
        "tree PSS after each step", [s.memory.tree_pss_mb for s in steps], final.tree_pss_mb, True
    )
    measure("poller VmHWM (kernel's peak VmRSS)", [final.hwm_mb], final.hwm_mb, False)
    measure(
        "tree PSS, peak during a cycle",
        [s.window.peak_pss_mb for s in cycles if s.window],
        cycles[-1].window.peak_pss_mb if cycles and cycles[-1].window else 0.0,
        False,
    )
    measure(
        "tree VmRSS sum, peak during a cycle",
        [s.window.peak_mb for s in cycles if s.window],
        cycles[-1].window.peak_mb if cycles and cycles[-1].window else 0.0,
        False,
    )
    measure("poller anonymous (heap) after each step", [s.memory.anon_mb for s in steps],
            final.anon_mb, False)  # fmt: skip
    measure("poller file-backed (code) after each step", [s.memory.file_mb for s in steps],
            final.file_mb, False)  # fmt: skip

    problems = [f"FAIL step {step.name}: {p}" for step in steps for p in step.problems]
    poll = settings.poll
    workers = parse_processes(poll.parse_workers, os.cpu_count() or 1)
    polled = sum(1 for step in cycles)
    notes = [
        f"{config.feed_count} feeds x {config.item_count} items, seed {config.seed}, "
        f"{polled} hourly cycles from {cycles[0].clock:%Y-%m-%d %H:%M}Z (local midnight in "
        f"Paris) on an injected clock; before each cycle after the first, "
        f"{config.changed_fraction:.0%} of the feeds (a fresh sample) publish a new version "
        "(+2 items, 1 edited); the others answer 304; then send_due_digests at the default "
        "recipient's send time (07:30 Europe/Paris) the next morning, to the outbox; "
        "digest row: new = items in the digest"
        if cycles
        else "no cycle ran",
        f"feeds: {info.body_bytes / 1e6:.1f} MB generated in {info.generate_s:.1f} s by the "
        f"server process (its own memory is not counted); poller: {workers} parse worker "
        "process(es), "
        f"max_in_flight={poll.limits.max_in_flight}, max_per_host={poll.limits.max_per_host}; "
        f"classification {classified}; logs: JSON lines to daemon.log in the work dir",
        f"this process before the section: VmRSS {before.rss_mb:.0f} MB (Python + bench); "
        f"with listener imported, the model loaded and the feeds added: VmRSS "
        f"{started.rss_mb:.0f} MB (anon {started.anon_mb:.0f}, file {started.file_mb:.0f}), "
        f"tree PSS {started.tree_pss_mb:.0f} MB",
        "rss_MB, anon_MB, pss_MB: this process (the poller: job thread, fetch threads, SQLite "
        "connection, the model) after the step; tree_pss_MB: with its descendants (the "
        "forkserver and multiprocessing's resource tracker stay between cycles; the parse "
        f"workers exit at the end of each); peak_*: sampled every {sample_interval_s * 1000:.0f}"
        " ms during the cycle, parse workers included; the tree's VmRSS sum counts shared "
        "pages (interpreter, preloaded modules) once per process: an upper bound",
        "the target (resident memory <= 300 MB) is checked against the poller's VmRSS and the "
        "tree's PSS after each step (the daemon's steady state between jobs); the peaks during "
        "a cycle (the poll, then the refine job) are shown for information",
        "refined, refine_s: the refine job after each poll (items re-scored by the second "
        "stage, its wall time); wall_s and cpu_s are the poll's alone",
        f"SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average at the end {load_average()}",
        *problems,
        *misses,
    ]
    return SectionReport(
        name=f"{NAME}: {config.feed_count} feeds x {config.item_count} items, "
        f"{polled} hourly cycles",
        tables=(
            Table(COLUMNS, tuple(rows), title="each step (memory in MB, after the step)"),
            Table(
                ("memory", "max_MB", "final_MB", "target", "result"),
                tuple(summary),
                title="the daemon's memory over the day",
            ),
        ),
        notes=tuple(notes),
        correct=not problems,
        on_target=not misses,
    )


def _step_row(step: Step) -> tuple[str, ...]:
    memory = step.memory
    window = step.window
    ok = step.statuses["ok"] if window is not None else step.statuses["sent"]
    not_modified = step.statuses["not_modified"]
    failed = sum(step.statuses.values()) - ok - not_modified
    return (
        step.name,
        f"{step.clock:%m-%d %H:%M}",
        str(ok),
        str(not_modified),
        str(failed),
        str(step.new),
        str(step.updated),
        str(step.items_in_db),
        f"{step.wall_s:.2f}",
        f"{step.cpu_s:.2f}",
        str(step.refined) if window is not None else "-",
        f"{step.refine_s:.1f}" if window is not None else "-",
        f"{memory.rss_mb:.0f}",
        f"{memory.anon_mb:.0f}",
        f"{memory.pss_mb:.0f}",
        f"{memory.tree_pss_mb:.0f}",
        "-" if window is None else f"{window.peak_mb:.0f}",
        "-" if window is None else f"{window.peak_pss_mb:.0f}",
        "wrong" if step.problems else "ok",
    )
