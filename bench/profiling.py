"""I/O: optional sampling profiles of each cycle with py-spy (`--profile DIR`).

py-spy (`pip install py-spy`) attaches to this process and its subprocesses for the length of
one cycle and writes collapsed stacks (`DIR/<cycle>.txt`, one "frame;frame;... count" line
per distinct stack, for flamegraph.pl or speedscope). `summarize` then says where the samples
went: per role (the job's thread, the fetch threads, parse workers, feed server, other
threads) the functions of our code and the leaf functions that took the most samples.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_RATE_HZ = 100
_RATE_NOTE = f"{_RATE_HZ} Hz per thread"
_STARTUP_S = 1.0  # py-spy needs a moment to attach before the first sample
_ROLES = (
    ("parse workers", re.compile(r"_process_worker")),
    ("job thread", re.compile(r"thread \(\d+\): MainThread")),
    ("fetch threads", re.compile(r"thread \(\d+\): fetch_")),
)
_OURS = re.compile(r"\((listener|bench)/")
# Leaves where a thread waits rather than works. py-spy's own idle detection misses most of
# them in containers, so they are counted apart.
_WAITING = re.compile(
    r"^(select|_PollLikeSelector\.select|EpollSelector\.select|Condition\.wait|Event\.wait"
    r"|_worker|Connection\._recv|Connection\._send|SocketIO\.readinto|SemLock\.__enter__"
    r"|SyncStream\.read|ThreadLock\.__enter__|Lock\.acquire|thread \()"
)


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def py_spy(output: Path, *, rate_hz: int = _RATE_HZ) -> Iterator[None]:
    """Sample this process tree (on-CPU stacks, per thread) while the block runs."""
    executable = find_py_spy()
    if executable is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    command = [
        executable,
        "record",
        "--pid",
        str(os.getpid()),
        "--subprocesses",
        "--threads",
        "--format",
        "raw",
        "--rate",
        str(rate_hz),
        "--output",
        str(output),
    ]
    with output.with_suffix(".log").open("wb") as log:
        spy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(_STARTUP_S)
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)


def summarize(path: Path, *, server_pid: int | None = None, top: int = 8) -> list[str]:
    """Lines naming, per role, its sample count and its costliest functions."""
    server = f"process {server_pid}:" if server_pid else None
    samples: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    ours: defaultdict[str, Counter[str]] = defaultdict(Counter)
    leaves: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        role = "feed server" if server and server in stack else _role(stack)
        leaf = _short(frames[-1])
        if _WAITING.match(leaf):
            waiting[role] += count
            continue
        samples[role] += count
        leaves[role][leaf] += count
        for frame in {_short(frame) for frame in frames if _OURS.search(frame)}:
            ours[role][frame] += count
    total = sum(samples.values()) or 1
    lines = [f"busy samples (waiting ones left out) at {_RATE_NOTE}"]
    for role, count in samples.most_common():
        lines.append(
            f"{role}: {count} busy samples ({100 * count / total:.0f}% of all busy), "
            f"{waiting[role]} waiting"
        )
        lines.extend(
            f"    incl {100 * n / count:4.0f}%  {frame}" for frame, n in ours[role].most_common(top)
        )
        lines.extend(
            f"    leaf {100 * n / count:4.0f}%  {frame}"
            for frame, n in leaves[role].most_common(top)
        )
    return lines


def _role(stack: str) -> str:
    for role, pattern in _ROLES:
        if pattern.search(stack):
            return role
    return "other threads"


def _short(frame: str) -> str:
    """'func (path/to/module.py:12)' without the line number, so lines of a function add up."""
    return re.sub(r":\d+\)$", ")", frame.strip())
