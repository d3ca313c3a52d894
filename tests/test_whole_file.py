"""Files written whole or not at all (listener.whole_file)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from listener.whole_file import move_whole, replacing, write_whole


def test_write_whole_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "file.bin"  # folders created as needed
    write_whole(target, b"old")
    write_whole(target, b"new")
    assert target.read_bytes() == b"new"
    assert [path.name for path in target.parent.iterdir()] == ["file.bin"]


def test_an_error_while_writing_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def write_half() -> None:
        with replacing(target) as out:
            out.write(b"half of the new")
            raise RuntimeError("stopped half-way")

    with pytest.raises(RuntimeError):
        write_half()
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["file.bin"]


def test_the_new_file_has_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")  # mode 0o666 under this process's umask
    write_whole(tmp_path / "whole.bin", b"x")
    mode = stat.S_IMODE((tmp_path / "whole.bin").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)


def test_a_link_is_followed_to_the_file_it_names(tmp_path: Path) -> None:
    kept = tmp_path / "kept" / "file.bin"
    write_whole(kept, b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(kept)
    write_whole(link, b"new")
    assert link.is_symlink()
    assert kept.read_bytes() == b"new"


def test_a_private_file_is_private(tmp_path: Path) -> None:
    write_whole(tmp_path / "digest.eml", b"x", mode=0o600)  # as the outbox writes
    assert stat.S_IMODE((tmp_path / "digest.eml").stat().st_mode) == 0o600


def test_a_file_from_another_file_system_is_copied_whole(tmp_path: Path) -> None:
    other = Path("/dev/shm")  # noqa: S108 - a tmpfs, for a second file system on purpose
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system to move a file from")
    source = other / f"listener-test-{tmp_path.name}"
    source.write_bytes(b"new")
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    try:
        move_whole(source, target)  # os.replace fails with EXDEV: copied, then removed
    finally:
        source.unlink(missing_ok=True)
    assert target.read_bytes() == b"new"
    assert not source.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["file.bin"]
