"""Pure: the poll path's second stage, static word vectors for the items the linear model
is unsure of (issue 10). Its file is read in `classify/linear.py`, built in
`classify/training.py`.

The sentence model of the `refine` job (multilingual-e5-small) reads ~10 items/s per core:
too slow for the poll path. Its knowledge is kept in a cheaper form: each word of a
vocabulary is embedded alone by that model once, at `make model`, and an item's vector is
the mean of its words' vectors weighted by idf × log(1 + tf), centred and L2-normalised. A
logistic head per label scores it, and the final score of each label is the mean of the
linear model's and the head's, as in the e5 stage (`refine.refine_predictions`). It reads
the text the linear model reads (`item_text`), so it runs wherever the linear model runs,
the parse workers included, at ~10,000 items/s per core on the items it sees.

The vocabulary is the corpus's words and the sentence model's own most frequent whole-word
pieces (read from its tokenizer), keyed without accents as `item_text` writes them; the
vectors are int8 with a scale per word (int8 and float16 score the same on the dev set).
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from listener.classify.decision import Prediction, fold_accents
from listener.classify.refine import Head, head_bytes, head_from_arrays, refine_predictions

EMBEDDER = "listener/e5-small-words-int8"
SUFFIX = ".static.npz"
# Of the sentence model's whole-word pieces, this many of the most frequent join the corpus's
# words: 31,150 words once folded, 12 MB of vectors. All 49,258 pieces (61,000 words) scored
# within the dev set's noise of it (0.755 against 0.761, before folding) for twice the size.
VOCABULARY_PIECES = 20_000
WORD = re.compile(r"[^\W\d_]{2,}")  # letters only: numbers and one-letter words say little


def static_path(model_path: Path) -> Path:
    """Where a model's static stage lives: `classifier.skops` -> `classifier.static.npz`."""
    return model_path.with_name(model_path.stem + SUFFIX)


def word_key(word: str) -> str:
    """Pure: a word as `item_text` writes it (lower case, no accents)."""
    return fold_accents(word.lower())


def words_of(text: str) -> list[str]:
    """Pure: the words of an `item_text` text, in order."""
    return WORD.findall(text)


def document_frequencies(texts: Iterable[str]) -> tuple[Counter[str], int]:
    """Pure: in how many texts each word appears, and how many texts there are."""
    counts: Counter[str] = Counter()
    total = 0
    for text in texts:
        counts.update(set(words_of(text)))
        total += 1
    return counts, total


def idf(frequency: int, documents: int) -> float:
    """Pure: scikit-learn's smoothed idf, so a word the corpus never saw weighs the most."""
    return math.log((documents + 1) / (frequency + 1)) + 1.0


def quantize(vectors: Any) -> tuple[Any, Any]:
    """Pure: (int8 vectors, float32 scale per row) of float vectors."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(vectors).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    quantized = np.round(vectors / scales[:, None]).astype(np.int8)
    return quantized, scales.astype(np.float32)


@dataclass(frozen=True, slots=True)
class WordVectors:
    """A vector per word (int8 × scale), each word's idf, and the centre of the corpus's
    item vectors: enough to embed a text (`embed`)."""

    rows: Mapping[str, int]  # word key -> row
    vectors: Any  # (words, dim) int8
    scales: Any  # (words,) float32
    idf: Any  # (words,) float32
    centre: Any  # (dim,) float32; zeros while the corpus's centre is measured
    # per row, the word the sentence model read (accents kept); written for the next build's
    # reuse, not read back by a process that only classifies
    embedded: tuple[str, ...] = ()

    def raw(self, texts: Sequence[str]) -> Any:
        """(len(texts), dim) float32: each text's weighted mean word vector, not centred."""
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        for index, text in enumerate(texts):
            known = [
                (self.rows[w], n) for w, n in Counter(words_of(text)).items() if w in self.rows
            ]
            if not known:
                continue
            rows = [row for row, _ in known]
            weights = np.log1p(np.array([n for _, n in known], np.float32)) * self.idf[rows]
            out[index] = (weights * self.scales[rows]) @ self.vectors[rows] / weights.sum()
        return out

    def embed(self, texts: Sequence[str]) -> Any:
        """(len(texts), dim) float32, centred and L2-normalised; a text without a known word
        is the zero vector (the head's intercepts alone score it)."""
        raw = self.raw(texts)
        known = np.any(raw != 0, axis=1)
        vectors = np.where(known[:, None], raw - self.centre, 0.0).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def arrays(self) -> dict[str, Any]:
        words = sorted(self.rows, key=self.rows.__getitem__)
        return {
            "words": np.array(words),
            "vectors": self.vectors,
            "scales": self.scales,
            "idf": self.idf,
            "centre": self.centre,
            "embedded": np.array(self.embedded),
        }


@dataclass(frozen=True, slots=True)
class StaticStage:
    """The head over word vectors, and its blend with the linear model's uncertain
    predictions."""

    head: Head
    words: WordVectors

    def refine(
        self, texts: Sequence[str], first: Sequence[Prediction], uncertain_below: float
    ) -> list[Prediction]:
        """`first` with each uncertain prediction replaced by the blend (its `why`, the
        linear model's terms, kept); texts come from `item_text`, in the same order."""
        unsure = [index for index, prediction in enumerate(first) if prediction.uncertain]
        out = list(first)
        if not unsure:
            return out
        vectors = self.words.embed([texts[index] for index in unsure])
        refined = refine_predictions(
            self.head, [first[index].scores for index in unsure], vectors, uncertain_below
        )
        for index, prediction in zip(unsure, refined, strict=True):
            out[index] = replace(prediction, why=first[index].why)
        return out


def static_bytes(
    words: WordVectors,
    coef: Any,
    intercept: Any,
    thresholds: Mapping[str, float],
    pairs_with: str,
) -> bytes:
    """The stage as one .npz archive with reproducible bytes (no pickle)."""
    return head_bytes(
        coef,
        intercept,
        thresholds,
        pairs_with,
        embedder=EMBEDDER,
        extra=words.arrays(),
        compress=False,  # read by every process that classifies: no inflating
    )


def static_from_bytes(data: bytes) -> StaticStage:
    """What static_bytes wrote; ValueError on anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            head = head_from_arrays(arrays, data, EMBEDDER, "st-")
            words: list[str] = arrays["words"].tolist()
            vectors = arrays["vectors"]
            if vectors.dtype != np.int8 or vectors.shape[0] != len(words):
                raise ValueError("its word vectors do not match its words")
            return StaticStage(
                head,
                WordVectors(
                    rows=dict(zip(words, range(len(words)), strict=True)),
                    vectors=vectors,
                    scales=arrays["scales"].astype(np.float32),
                    idf=arrays["idf"].astype(np.float32),
                    centre=arrays["centre"].astype(np.float32),
                ),  # (`embedded` stays in the file: only the next build reads it)
            )
    except (KeyError, IndexError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        # (np.load refuses, without unpickling, a file that is not an .npz of arrays.)
        raise ValueError(f"not a listener static stage ({exc})") from exc
