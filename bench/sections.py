"""The benchmark sections, by name, and how one runs in a child process (bench/__main__.py
runs each in a fresh interpreter, so its memory figures start from a clean process)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Protocol

from bench import classify, daemon, digest, learning, poll, watches
from bench.report import SectionReport


class Section(Protocol):
    NAME: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, options: argparse.Namespace, work_dir: Path) -> SectionReport: ...


SECTIONS: dict[str, Section] = {
    section.NAME: section for section in (poll, classify, learning, digest, daemon, watches)
}


def run_section(name: str, options: argparse.Namespace, section_dir: Path, sender: Any) -> None:
    """Child process: run the section, send its report back through the pipe."""
    sender.send(SECTIONS[name].run(options, section_dir))
    sender.close()
