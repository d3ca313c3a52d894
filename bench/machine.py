"""I/O: how fast this machine runs Python right now, so that two `make bench` runs can be
compared. A virtual machine's cores can be slower one day than the next with nothing else
running on it (the guest sees no steal time): a cold poll once read 14.1 s and 17.9 s on
the same commit. A fixed CPU-bound workload, timed before the sections, tells the reader
which of two runs had the faster machine.
"""

from __future__ import annotations

import time

ROUNDS = 5


def reference_workload() -> int:
    """Pure: a fixed mix of what the poll's Python does most (string work, dict lookups,
    integer arithmetic); its result only keeps the interpreter from skipping anything."""
    seen: dict[str, int] = {}
    total = 0
    for number in range(200_000):
        word = f"item-{number % 5_000}"
        seen[word] = seen.get(word, 0) + 1
        total += len(word.upper()) * (number & 7)
    return total + len(seen)


def reference_ms() -> float:
    """The workload's best time over ROUNDS runs, in milliseconds (the best is the least
    disturbed by whatever else runs)."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        reference_workload()
        best = min(best, time.perf_counter() - started)
    return best * 1000
