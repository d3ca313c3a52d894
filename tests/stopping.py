"""Stop a listener process with a signal and read what it wrote. A process that does not exit
in time fails the test with its log and every thread's stack (SIGUSR1: listener.daemon's
install_signal_handlers), so a hang in CI says where it hung."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

STACKS_WRITTEN_S = 1.0  # the dump is written from the signal handler, in microseconds


def stop_process(
    process: subprocess.Popen[str], sig: signal.Signals, timeout_s: float
) -> tuple[str, str]:
    """Send `sig`, then (stdout, stderr) once the process has exited."""
    process.send_signal(sig)
    try:
        return process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(STACKS_WRITTEN_S)
        process.kill()
        _, err = process.communicate(timeout=10)  # a retried communicate loses no output
        pytest.fail(f"still running {timeout_s:.0f} s after {sig.name}; its stderr:\n{err}")
