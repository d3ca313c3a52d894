"""I/O: memory and CPU of this process tree, sampled from /proc by a background thread.

Memory (what the poll table reports as peak_MB): every `interval_s` the VmRSS of this process
plus that of each descendant (the forkserver, the parse workers, multiprocessing's resource
tracker) is summed, and the peak of that sum per window is kept. Pages shared between processes
(the interpreter, modules the forkserver preloaded before forking the workers) count once per
process, so the sum is an upper bound on the physical memory used. Each time the sum reaches a
new peak the summed PSS (shared pages split between their users) is read too, from
smaps_rollup, at most every `pss_interval_s` (a skipped peak is read at the next sample that
is within 5% of it): it costs ~1 ms per 100 MB process, too much
for every sample (the monitor's own CPU is part of "poller": keep it small).

CPU: user + system time per process, grouped as "poller" (this process: the job's thread and
the fetch threads), "workers" (its descendants) and "server" (the `server` pid), plus "other":
time the whole machine was busy on anything else (another test run, for instance), which
makes a noisy measurement visible.

The process list is rescanned every `rescan_every` samples, so a worker that lives less than
that may be missed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

_PROC = Path("/proc")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Window:
    """What happened between reset() and finish()."""

    peak_mb: float
    peak_pss_mb: float
    processes: int  # the most processes seen at once in the tree
    poller_cpu_s: float
    workers_cpu_s: float
    server_cpu_s: float
    other_cpu_s: float
    monitor_cpu_s: float  # this sampler's own thread, included in poller_cpu_s


class TreeMonitor:
    def __init__(
        self,
        *,
        server: int | None = None,
        interval_s: float = 0.05,
        rescan_every: int = 10,
        pss_interval_s: float = 1.0,
    ) -> None:
        self.root = os.getpid()
        self.server = server
        self.interval_s = interval_s
        self.rescan_every = rescan_every
        self.pss_interval_s = pss_interval_s
        self._pss_read_at = 0.0
        self._pss_due = False
        self.available = (_PROC / str(self.root) / "statm").exists()
        self._pids: list[int] = [self.root]
        self._lock = threading.Lock()
        self._peak_bytes = 0
        self._peak_pss_bytes = 0
        self._processes = 0
        self._cpu_first: dict[int, int] = {}  # ticks per pid at reset (0 if born later)
        self._cpu_last: dict[int, int] = {}
        self._machine_first = 0
        self._thread_id: int | None = None
        self._thread_first = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self) -> TreeMonitor:
        if self.available:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def reset(self) -> None:
        """Start a new window."""
        if not self.available:
            return
        pids = self._descendants()
        total = self._total_rss(pids)
        pss = self._total_pss(pids)
        cpu = self._cpu_ticks([*pids, *self._server_pids()])
        with self._lock:
            self._pids = pids
            self._peak_bytes = total
            self._peak_pss_bytes = pss
            self._processes = len(pids)
            self._pss_due = False
            self._cpu_first = dict(cpu)
            self._cpu_last = dict(cpu)
            self._machine_first = _machine_busy_ticks()
            self._thread_first = self._thread_ticks()

    def finish(self) -> Window | None:
        """Close the window with one last sample; None without /proc."""
        if not self.available:
            return None
        self._pss_read_at = 0.0  # a pending PSS read happens now
        self._sample(rescan=True)
        with self._lock:
            ticks = {
                pid: last - self._cpu_first.get(pid, 0) for pid, last in self._cpu_last.items()
            }
            machine = _machine_busy_ticks() - self._machine_first
            monitor = self._thread_ticks() - self._thread_first
            peak_mb = self._peak_bytes / MB
            peak_pss_mb = self._peak_pss_bytes / MB
            processes = self._processes
        poller = ticks.pop(self.root, 0)
        server = sum(ticks.pop(pid, 0) for pid in self._server_pids())
        workers = sum(ticks.values())
        other = max(0, machine - poller - server - workers)
        return Window(
            peak_mb=peak_mb,
            peak_pss_mb=peak_pss_mb,
            processes=processes,
            poller_cpu_s=poller / _TICKS_PER_S,
            workers_cpu_s=workers / _TICKS_PER_S,
            server_cpu_s=server / _TICKS_PER_S,
            other_cpu_s=other / _TICKS_PER_S,
            monitor_cpu_s=monitor / _TICKS_PER_S,
        )

    def _thread_ticks(self) -> int:
        if self._thread_id is None:
            return 0
        stat = _read(f"/proc/{self.root}/task/{self._thread_id}/stat")
        if stat is None:
            return 0
        fields = stat[stat.rindex(b")") + 2 :].split()
        return int(fields[11]) + int(fields[12])

    def _run(self) -> None:
        self._thread_id = threading.get_native_id()
        tick = 0
        while not self._stop.wait(self.interval_s):
            tick += 1
            self._sample(rescan=tick % self.rescan_every == 0)

    def _sample(self, *, rescan: bool) -> None:
        pids = self._descendants() if rescan else self._pids
        total = self._total_rss(pids)
        cpu = self._cpu_ticks([*pids, *self._server_pids()])
        with self._lock:
            self._pids = pids
            self._cpu_last.update(cpu)
            self._processes = max(self._processes, len(pids))
            is_peak = total > self._peak_bytes
            if is_peak:
                self._peak_bytes = total
        # A peak whose PSS read was skipped is read later, while the sum is still near it.
        self._pss_due = self._pss_due or is_peak
        if self._pss_due and time.monotonic() - self._pss_read_at >= self.pss_interval_s:
            with self._lock:
                near_peak = total >= 0.95 * self._peak_bytes
            if near_peak:
                self._pss_read_at = time.monotonic()
                self._pss_due = False
                pss = self._total_pss(pids)
                with self._lock:
                    self._peak_pss_bytes = max(self._peak_pss_bytes, pss)

    def _server_pids(self) -> list[int]:
        return [] if self.server is None else [self.server]

    def _descendants(self) -> list[int]:
        """This process and its descendants, minus the server's subtree."""
        children: dict[int, list[int]] = {}
        for entry in os.scandir(_PROC):
            if not entry.name.isdigit():
                continue
            stat = _read(f"{entry.path}/stat")
            if stat is None:  # it exited while we looked
                continue
            if b"(py-spy)" in stat:  # the profiler of --profile is not the poller's work
                continue
            # The command name may contain spaces and parentheses: fields follow the last ")".
            ppid = int(stat[stat.rindex(b")") + 2 :].split(b" ", 2)[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found = [self.root]
        queue = [self.root]
        while queue:
            for child in children.get(queue.pop(), ()):
                if child != self.server:
                    found.append(child)
                    queue.append(child)
        return found

    @staticmethod
    def _total_rss(pids: Iterable[int]) -> int:
        total = 0
        for pid in pids:
            statm = _read(f"/proc/{pid}/statm")
            if statm is not None:
                total += int(statm.split()[1]) * _PAGE_BYTES
        return total

    @staticmethod
    def _total_pss(pids: Iterable[int]) -> int:
        total = 0
        for pid in pids:
            text = _read(f"/proc/{pid}/smaps_rollup")
            start = -1 if text is None else text.find(b"\nPss:")
            if text is not None and start >= 0:
                total += int(text[start + 5 :].split(None, 1)[0]) * 1024  # kB
        return total

    @staticmethod
    def _cpu_ticks(pids: Iterable[int]) -> dict[int, int]:
        ticks = {}
        for pid in pids:
            stat = _read(f"/proc/{pid}/stat")
            if stat is not None:
                fields = stat[stat.rindex(b")") + 2 :].split()
                ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks

    def __enter__(self) -> TreeMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _machine_busy_ticks() -> int:
    """All CPUs' busy time: user, nice, system, irq, softirq (not idle, iowait or steal)."""
    line = (_read("/proc/stat") or b"cpu 0 0 0 0 0 0 0").split(b"\n", 1)[0]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in line.split()[1:8])
    return user + nice + system + irq + softirq


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None
