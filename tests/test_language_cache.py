"""The language model's decompressed copy in the cache folder: written once, read back the
same, and never in the way (a damaged copy or a read-only folder falls back to the file)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from py3langid import modelio
from py3langid.langid import MODEL_DIR, MODEL_FILE

from listener.feeds.language import _read_model

SHIPPED = MODEL_DIR / MODEL_FILE


def assert_same_model(got: tuple[object, ...], expected: tuple[object, ...]) -> None:
    assert len(got) == len(expected) == 6
    for mine, theirs in zip(got, expected, strict=True):
        if isinstance(theirs, np.ndarray):
            assert np.array_equal(mine, theirs)
        else:
            assert list(mine) == list(theirs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def shipped() -> tuple[object, ...]:
    return tuple(modelio.load_model(SHIPPED))


def test_the_cached_copy_is_written_once_and_reads_back_the_same(
    tmp_path: Path, shipped: tuple[object, ...]
) -> None:
    cache = tmp_path / "cache"  # created on first use
    assert_same_model(_read_model(cache), shipped)
    [copy] = cache.iterdir()
    assert copy.name.startswith("py3langid-")
    assert copy.suffix == ".npz"
    written = copy.stat().st_mtime_ns
    assert_same_model(_read_model(cache), shipped)
    assert copy.stat().st_mtime_ns == written  # read, not rewritten
    assert [p.name for p in cache.iterdir()] == [copy.name]  # no partial file left


def test_a_damaged_copy_falls_back_to_the_shipped_file(
    tmp_path: Path, shipped: tuple[object, ...]
) -> None:
    _read_model(tmp_path)
    [copy] = tmp_path.iterdir()
    copy.write_bytes(copy.read_bytes()[: 1 << 20])  # cut short, as by a full disk
    assert_same_model(_read_model(tmp_path), shipped)
    assert not copy.exists()  # dropped, so that the next load writes it whole again
    assert_same_model(_read_model(tmp_path), shipped)
    assert copy.stat().st_size > 1 << 20


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_cache_folder_falls_back_to_the_shipped_file(
    tmp_path: Path, shipped: tuple[object, ...]
) -> None:
    tmp_path.chmod(0o500)
    try:
        assert_same_model(_read_model(tmp_path), shipped)
    finally:
        tmp_path.chmod(0o700)


def test_a_cache_folder_that_cannot_be_made_falls_back_to_the_shipped_file(
    tmp_path: Path, shipped: tuple[object, ...]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_same_model(_read_model(blocker / "cache"), shipped)


def test_no_cache_folder_reads_the_shipped_file(shipped: tuple[object, ...]) -> None:
    assert_same_model(_read_model(None), shipped)
