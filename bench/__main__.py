"""`python -m bench`: run the benchmark sections and print their tables.

A section is a module with NAME, add_arguments(parser) and run(options, work_dir) ->
SectionReport; register it in bench/sections.py. Each runs in a fresh interpreter, so no
section's memory figures carry what an earlier one left behind. Sections: poll (three poll
cycles), classify (model load and throughput), digest (one digest per recipient over a
generated database of a million items), learning (corrections learning curve on the real-item
dev set, when present), daemon (a simulated day of hourly polls and the
digest), watches (50 watches matched against items, and the backfill of a new watch over a
generated database of a million items).
Exit status: 1 if a section's results are wrong, or if a target is missed (unless --soft),
else 0.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
from pathlib import Path

from bench.report import SectionReport, format_report
from bench.sections import SECTIONS, run_section


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="listener benchmarks on generated data, printed as plain-text tables.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SECTIONS),
        help="run only this section (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (databases, logs) and print it"
    )
    parser.add_argument(
        "--tmpdir",
        type=Path,
        help="where to create the work dir (default: the system's; the database lives there)",
    )
    parser.add_argument(
        "--soft", action="store_true", help="exit 0 when only timing/memory targets are missed"
    )
    for section in SECTIONS.values():
        section.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = make_parser().parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="listener-bench-", dir=options.tmpdir))
    reports = []
    try:
        for name in options.only or list(SECTIONS):
            section_dir = work_dir / name
            section_dir.mkdir()
            report = _run_isolated(name, options, section_dir)
            reports.append(report)
            print(format_report(report), flush=True)
    finally:
        if options.keep:
            print(f"work dir kept: {work_dir}", flush=True)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    if not all(report.correct for report in reports):
        return 1
    if not options.soft and not all(report.on_target for report in reports):
        return 1
    return 0


def _run_isolated(name: str, options: argparse.Namespace, section_dir: Path) -> SectionReport:
    """Run one section in a fresh interpreter: a section's memory figures must not carry
    what earlier sections left in this process (a million generated items, for one)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=run_section, args=(name, options, section_dir, sender))
    process.start()
    sender.close()
    try:
        report: SectionReport = receiver.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"bench section {name} died (exit code {process.exitcode})") from None
    process.join()
    return report


if __name__ == "__main__":
    sys.exit(main())
