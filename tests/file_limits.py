"""A full disk without a mount: the kernel caps how far a child process may grow a file."""

from __future__ import annotations

import resource
import signal


def cap_file_size(limit: int) -> None:
    """For `preexec_fn`: files may not grow past `limit` bytes in the child. Without
    SIGXFSZ's default action (killing it), a write past the cap fails with EFBIG, as a
    write to a full disk fails with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
