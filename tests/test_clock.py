"""The suite's own clock: `pytest --clock` moves this process and the ones it starts alike."""

from __future__ import annotations

import subprocess
import sys
import time


def test_child_processes_share_the_test_clock() -> None:
    before = time.time()
    child = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        check=True,
        capture_output=True,
        text=True,
    )
    after = time.time()
    # Same wall clock (real or shifted by --clock), give or take the child's start-up.
    assert before - 1 <= float(child.stdout) <= after + 1
