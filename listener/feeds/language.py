"""The language of an item's text, detected offline with py3langid; I/O only to read its
model (and keep a decompressed copy of it in the cache folder, when there is one).

The model ships in the wheel and loads once per process on first use (about 70 MB; 0.6 s
from the wheel's LZMA file, 0.1 s from the cached copy), up front with
`load_language_model`, or on a thread with `preload_language_model`. Feeds' own language
tags are often wrong, so callers detect per item. A poll detects only its new and changed
items, in the process that writes them: done in each parse worker, it cost every worker the
model's 70 MB and ran on every unchanged item too (issue 14)."""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import re
import shutil
import threading
import zipfile
from array import array
from dataclasses import replace
from pathlib import Path
from typing import Any

from listener.domain import Item
from listener.whole_file import replacing

# Tuned on the 4,905 items of /work/shared/realfeeds: 95% get an answer, and 0.45% of the
# answers differ from the feed's language (mostly feeds that mix languages). 200 characters
# answer 0.4% more items for 1.3x the cost; a threshold of 0.3, 2% more, but 4% of those wrong.
_MAX_CHARS = 150
_MIN_LETTERS = 12  # below this the model is guessing
_ENOUGH_LETTERS = re.compile(rf"(?:[^\W\d_][\W\d_]*){{{_MIN_LETTERS}}}")
_MIN_CONFIDENCE = 0.5


_LOADING = threading.Lock()  # one load, whichever thread asks first
_LOADED: list[Any] = []  # the identifier, once loaded
# Set by preload_language_model: where the decompressed model is kept between processes.
_CACHE_DIR: list[Path | None] = [None]


def _identifier() -> Any:
    with _LOADING:
        if not _LOADED:
            _LOADED.append(_load_identifier(_CACHE_DIR[0]))
        return _LOADED[0]


def _load_identifier(cache_dir: Path | None) -> Any:
    # Imported here: numpy and the model come with it, and a poll with nothing new needs
    # neither.
    import numpy as np
    from py3langid.langid import LanguageIdentifier

    ptc, pc, classes, nextmove, row, output = _read_model(cache_dir)
    identifier = LanguageIdentifier(
        np.asarray(ptc), np.asarray(pc), classes, nextmove, output, norm_probs=True, tk_row=row
    )
    # The model also knows ISO 639-3 codes (pcm, ary, zxx...); keep the two-letter ones so
    # the answer fits Item.lang and close dialects don't split the probability.
    identifier.set_languages([code for code in identifier.labels if len(code) == 2])
    # Scoring gathers one row per feature; row-major storage halves its cost (same dtype
    # and size as the column-major copy set_languages makes).
    identifier.nb_ptc = identifier.nb_ptc.copy(order="C")
    # set_languages keeps the full model to allow another call; we never make one, and the
    # copy is 28 MB in every parse worker.
    identifier._full_model = None
    # Two per-state tables of 104,583 Python ints: as arrays they take 6 MB less, and the
    # walk over a text reads them as fast.
    identifier._rowbase = array("I", identifier._rowbase)
    identifier.tk_output = array("i", identifier.tk_output)
    return identifier


def _read_model(cache_dir: Path | None) -> tuple[Any, ...]:
    """py3langid's model arrays. Its file is LZMA: decompressing it took 0.5 of the load's
    0.6 s of CPU, in every poll that found something new, so the decompressed copy is kept
    in `cache_dir` (named for the file's checksum) and read from there next time. Without a
    usable cache folder, the file is read as py3langid reads it."""
    import numpy as np
    from py3langid import modelio
    from py3langid.langid import MODEL_DIR, MODEL_FILE

    source = Path(MODEL_FILE) if Path(MODEL_FILE).is_absolute() else MODEL_DIR / MODEL_FILE
    if cache_dir is None:
        return tuple(modelio.load_model(source))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cached = cache_dir / f"py3langid-{digest}.npz"
    if not cached.is_file():
        try:
            # Whole or absent, whichever process writes it; a cache need not reach the disk.
            with lzma.open(source) as stream, replacing(cached, durable=False) as out:
                shutil.copyfileobj(stream, out, length=1 << 20)
        except OSError:  # read-only, full: the cache is an optimisation
            return tuple(modelio.load_model(source))
    try:
        with np.load(cached, allow_pickle=False) as data:
            return (
                data["ptc"],
                data["pc"],
                data["classes"].tolist(),
                _as_array(data["nextmove"]),
                _as_array(data["nextmove_row"]),
                data["out_feat"].tolist(),
            )
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        # A damaged copy: read the file itself, and drop the copy so the next load rewrites it.
        with contextlib.suppress(OSError):
            cached.unlink(missing_ok=True)
        return tuple(modelio.load_model(source))


def _as_array(values: Any) -> array[int]:
    """An unsigned numpy array as the stdlib array py3langid's DFA walk indexes."""
    out = array({2: "H", 4: "I", 8: "L"}[values.dtype.itemsize])
    out.frombytes(values.tobytes())
    return out


def load_language_model() -> None:
    """Load the model now (e.g. in a worker's initializer) instead of on first use."""
    _identifier()


def preload_language_model(cache_dir: Path | None = None) -> None:
    """Start loading the model on a thread of its own (a poll, when a feed brings new
    bytes), so the load overlaps the fetches and parses; detect_language waits for it.
    `cache_dir` keeps a decompressed copy of the model for the next process."""
    if not _LOADED and not _LOADING.locked():
        _CACHE_DIR[0] = cache_dir
        threading.Thread(target=_identifier, name="language-preload", daemon=True).start()


def with_languages(items: tuple[Item, ...]) -> tuple[Item, ...]:
    """The items, each with the language detected from its title and summary."""
    return tuple(
        replace(item, lang=detect_language(f"{item.title} {item.summary}")) for item in items
    )


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of `text`, or None when it is too short or the model is unsure."""
    sample = text[:_MAX_CHARS]
    if not _ENOUGH_LETTERS.search(sample):
        return None
    code, confidence = _identifier().classify(sample)
    return str(code) if confidence >= _MIN_CONFIDENCE else None
