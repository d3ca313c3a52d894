"""Files written whole or not at all: the outbox's messages, the model's files, the
language model's cache. I/O only.

A reader (a parse worker, the daemon, a mail client watching the outbox) must never meet a
file cut short by a full disk or a killed process, and a failed write must keep the file
that was there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def replacing(path: Path, *, durable: bool = True, mode: int = 0o666) -> Iterator[BinaryIO]:
    """A new file to write `path`'s content into. When the block ends without an error, the
    file is flushed (to disk too, when `durable`) and renamed over `path`; when it raises,
    the new file is removed and `path` is left as it was. OSError is the caller's to turn
    into a message; the folder is created when missing. The new file's `mode` is masked by
    the umask, as open() does.

    A symbolic link is followed to the file it names, as writing in place would: the rename
    would otherwise put a plain file where a deployment keeps its link."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    # A dot name beside the target: on the same file system (so the rename is atomic), and
    # skipped by whoever lists the folder for *.eml or *.skops meanwhile. Not mkstemp: its
    # 0o600 would hide a model from the daemon's user when another user trains it.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_whole(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """`data` as the content of `path`, whole or not at all (see `replacing`)."""
    with replacing(path, mode=mode) as out:
        out.write(data)


def move_whole(source: Path, path: Path) -> None:
    """The file `source` renamed over `path` (through a symbolic link, as `replacing`), in
    one step when both are on one file system; else copied whole (see `replacing`) and
    removed."""
    target = path.resolve() if path.is_symlink() else path
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        write_whole(target, source.read_bytes())
        source.unlink()
