"""Pure: the shipped model's scoring in numpy alone, without scikit-learn.

A trained pipeline is hashed word and char_wb n-grams -> sublinear tf-idf -> l2 norm -> one
linear model per label -> a sigmoid calibrator. Scoring needs only the hashing, the idf
vectors, the coefficients and two numbers per calibrator, so `make model` saves those arrays
(`classifier.npz`) beside the skops pipeline, and a poll scores with them: importing
scikit-learn, scipy and skops cost each one-shot command that classifies ~1.2 s and the
process ~100 MB (issue 14). The n-grams and their columns are scikit-learn's, rule for rule
(HashingVectorizer's analyzers, MurmurHash3 x86 32-bit, seed 0): tests/test_classify.py
checks that the probabilities equal the pipeline's predict_proba.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import zipfile
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import mmh3
import numpy as np

from listener.classify.archive import npz_bytes
from listener.classify.decision import (
    DEFAULT_UNCERTAIN_BELOW,
    WHY_TERMS,
    Prediction,
    decide_labels,
    item_text,
    retrain_hint,
)
from listener.classify.deferred import ModelFiles, read_model_files, runtime_path
from listener.classify.static import StaticStage, static_from_bytes, static_path
from listener.domain import LABELS
from listener.errors import ClassifierError

WORD_PATTERN = r"(?u)\b\w\w+\b"  # HashingVectorizer's default
_TOKEN = re.compile(WORD_PATTERN)
_WHITE_SPACES = re.compile(r"\s\s+")
ANALYZERS = ("word", "char_wb")

# Texts scored at once: the coordinate arrays of a chunk take ~4 MB; a poll's batch of
# 1,000 items in one go took 30 MB more, in the poller and in each parse worker.
CHUNK_TEXTS = 256

_HAS_LETTER = re.compile(r"[^\W\d_]")
# Function words carry weight in a linear model but explain nothing to a reader.
_FUNCTION_WORDS = """
    a about after all also an and any are as at be been but by can could did do does for from
    get had has have how if in into is it its just ll may might more most my no not now
    of on one or our out over re so some than that the their them then there these they this
    those through to up us ve was we were what when which who why will with would you your
    ai au aux avec ce ces cette chez ci comme dans de des donc dont du elle en entre est et
    etre ete fait faut il ils je la le les leur leurs lui mais ne nos notre nous on ont ou
    par pas peut plus pour pres qu que qui sa sans se ses son sont sur tous tout tres un une
    vos votre vous"""
_WHY_SKIPPED = frozenset(_FUNCTION_WORDS.split())


@dataclass(frozen=True, slots=True)
class Branch:
    """One hashed feature block: how its n-grams are made, and their idf weights."""

    name: str
    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    idf: Any  # float32 (n_features,)
    sublinear_tf: bool
    l2_norm: bool
    start: int  # its first column among all the blocks'

    @property
    def size(self) -> int:
        return int(self.idf.shape[0])

    def ngrams(self, text: str) -> list[str]:
        """The n-grams scikit-learn's analyzer makes of `text` (lowercase, no accent strip)."""
        low, high = self.ngram_range
        if self.analyzer == "word":
            return word_ngrams(_TOKEN.findall(text.lower()), low, high)
        return char_wb_ngrams(text.lower(), low, high)


def word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """Tokens, then their n-grams joined by a space (sklearn's _word_ngrams)."""
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams inside each space-padded word (sklearn's _char_wb_ngrams)."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text).split():
        padded = f" {word} "
        for n in range(low, high + 1):
            if len(padded) <= n:  # a short word counts once, whole
                grams.append(padded)
                break
            grams.extend([padded[i : i + n] for i in range(len(padded) - n + 1)])
    return grams


def hashed_column(term: str, n_features: int) -> int:
    """The column HashingVectorizer gives `term` (sklearn's _hashing_fast.transform)."""
    hashed = mmh3.hash(term, 0, signed=True)
    if hashed == -(2**31):
        return (2**31 - 1 - (n_features - 1)) % n_features
    return abs(hashed) % n_features


class _Columns(dict[str, int]):
    """term -> column for one block, computed once per distinct term: most n-grams of a
    batch repeat, and a dict lookup is cheaper than a hash. Emptied when it grows large."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = n_features

    def __missing__(self, term: str) -> int:
        if len(self) >= 50_000:
            self.clear()
        column = self[term] = hashed_column(term, self.n_features)
        return column


@dataclass(frozen=True, slots=True)
class LinearScorer:
    """Calibrated probabilities of each label for texts; see the module docstring."""

    branches: tuple[Branch, ...]
    weights: Any  # float32 (n_features, n_labels)
    intercepts: Any  # float64 (n_labels,)
    slopes: Any  # calibrators: probability = 1 / (1 + exp(slope * decision + offset))
    offsets: Any

    def __post_init__(self) -> None:
        columns = sum(branch.size for branch in self.branches)
        if self.weights.shape[0] != columns or self.weights.shape[1] != len(self.intercepts):
            raise ValueError("the model's features and coefficients disagree")

    def features(self, branch: Branch, texts: Sequence[str]) -> tuple[Any, Any, Any]:
        """(rows, columns, values): the branch's tf-idf matrix in coordinate form, one entry
        per (text, column), values weighted and normalised as the pipeline does."""
        if branch.analyzer == "char_wb":
            # A word's n-grams depend on the word alone, and words repeat far more than
            # texts: their columns are looked up a word at a time (3x faster), as packed
            # int32 bytes that join into one buffer numpy reads without a Python int each.
            of_word = _word_columns(branch).__getitem__
            packed = [b"".join(map(of_word, text.lower().split())) for text in texts]
            cols = np.frombuffer(b"".join(packed), dtype=np.int32).astype(np.int64)
            lengths = np.fromiter(map(len, packed), dtype=np.int64, count=len(packed)) // 4
        else:
            column = _columns(branch).__getitem__  # dict's own lookup, calls __missing__
            hashed = [list(map(column, branch.ngrams(text))) for text in texts]
            cols = np.fromiter(chain.from_iterable(hashed), dtype=np.int64)
            lengths = np.fromiter(map(len, hashed), dtype=np.int64, count=len(hashed))
        row_ids = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        if not len(cols):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float32)
        # Count each (row, column) once: sklearn's sum_duplicates.
        keys = row_ids * branch.size + cols
        unique, counts = np.unique(keys, return_counts=True)
        rows, cols_a = np.divmod(unique, branch.size)
        values = counts.astype(np.float32)
        if branch.sublinear_tf:
            np.log(values, values)
            values += np.float32(1.0)
        values *= branch.idf[cols_a]
        if branch.l2_norm:
            norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=len(texts)))
            norms[norms == 0.0] = 1.0
            values = (values / norms[rows]).astype(np.float32)
        return rows, cols_a, values

    def probabilities(self, texts: Sequence[str]) -> tuple[Any, dict[str, Any]]:
        """(n_texts, n_labels) probabilities, and each block's (rows, columns, values)."""
        decision = np.zeros((len(texts), len(self.intercepts)), dtype=np.float64)
        blocks = {}
        for branch in self.branches:
            rows, cols, values = blocks[branch.name] = self.features(branch, texts)
            contributions = self.weights[branch.start + cols] * values[:, None]
            for label in range(decision.shape[1]):
                decision[:, label] += np.bincount(
                    rows, weights=contributions[:, label], minlength=len(texts)
                )
        decision += self.intercepts
        return 1.0 / (1.0 + np.exp(self.slopes * decision + self.offsets)), blocks

    def arrays(self) -> dict[str, Any]:
        """What `from_arrays` needs, for np.savez (numbers and strings only: no pickle)."""
        out: dict[str, Any] = {
            "weights": self.weights,
            "intercepts": self.intercepts,
            "slopes": self.slopes,
            "offsets": self.offsets,
            "branch_names": np.array([b.name for b in self.branches]),
            "branch_analyzers": np.array([b.analyzer for b in self.branches]),
            "branch_ngrams": np.array([b.ngram_range for b in self.branches], dtype=np.int64),
            "branch_flags": np.array(
                [(b.sublinear_tf, b.l2_norm) for b in self.branches], dtype=np.bool_
            ),
        }
        for index, branch in enumerate(self.branches):
            out[f"idf_{index}"] = branch.idf
        return out

    @classmethod
    def from_arrays(cls, arrays: Any) -> LinearScorer:
        """The scorer `arrays` describes (an np.load of a saved one); ValueError, KeyError."""
        branches, start = [], 0
        for index, name in enumerate(arrays["branch_names"].tolist()):
            analyzer = str(arrays["branch_analyzers"][index])
            if analyzer not in ANALYZERS:
                raise ValueError(f"unknown analyzer {analyzer!r}")
            low, high = (int(n) for n in arrays["branch_ngrams"][index])
            sublinear, l2 = (bool(flag) for flag in arrays["branch_flags"][index])
            idf = np.asarray(arrays[f"idf_{index}"], dtype=np.float32)
            branches.append(Branch(str(name), analyzer, (low, high), idf, sublinear, l2, start))
            start += branches[-1].size
        return cls(
            tuple(branches),
            np.asarray(arrays["weights"], dtype=np.float32),
            np.asarray(arrays["intercepts"], dtype=np.float64),
            np.asarray(arrays["slopes"], dtype=np.float64),
            np.asarray(arrays["offsets"], dtype=np.float64),
        )


class _WordColumns(dict[str, bytes]):
    """word -> the columns of its char_wb n-grams as native int32 bytes, for one block:
    a third of a tuple of ints' memory (the cache lives in the poller and in each parse
    worker). Emptied when large."""

    def __init__(self, branch: Branch) -> None:
        super().__init__()
        self.branch = branch

    def __missing__(self, word: str) -> bytes:
        if len(self) >= 30_000:
            self.clear()
        low, high = self.branch.ngram_range
        size = self.branch.size
        # The word cache already skips the n-grams of known words: a second cache of the
        # n-grams themselves cost 20 MB and gained nothing measurable.
        grams = char_wb_ngrams(word, low, high)
        columns = self[word] = array("i", [hashed_column(g, size) for g in grams]).tobytes()
        return columns


_COLUMNS: dict[int, _Columns] = {}
_WORD_COLUMNS: dict[tuple[int, tuple[int, int]], _WordColumns] = {}


def _word_columns(branch: Branch) -> _WordColumns:
    key = (branch.size, branch.ngram_range)
    cache = _WORD_COLUMNS.get(key)
    if cache is None:
        cache = _WORD_COLUMNS[key] = _WordColumns(branch)
    return cache


def _columns(branch: Branch) -> _Columns:
    """The term -> column cache for a block of this size (shared: the column depends only
    on the term and the size)."""
    cache = _COLUMNS.get(branch.size)
    if cache is None:
        cache = _COLUMNS[branch.size] = _Columns(branch.size)
    return cache


def terms_in(branch: Branch, text: str) -> Iterable[str]:
    """The distinct n-grams of `text` for this block, in order of first appearance."""
    return dict.fromkeys(branch.ngrams(text))


class LinearClassifier:
    """A LinearScorer and its decision rule: the Classifier a poll and the CLI use."""

    def __init__(
        self,
        scorer: LinearScorer,
        *,
        version: str,
        thresholds: Mapping[str, float],
        uncertain_below: float,
        labels: tuple[str, ...] = LABELS,
        pipeline: Any = None,
    ) -> None:
        if len(scorer.intercepts) != len(labels):
            raise ClassifierError("the model's coefficients and labels disagree")
        self.scorer = scorer
        self.version = version
        self.labels = labels
        self.thresholds = dict(thresholds)
        self.uncertain_below = uncertain_below
        self.pipeline = pipeline  # the fitted scikit-learn pipeline, when it was loaded
        self.files: ModelFiles | None = None  # set when it was read from files
        self.load_ms = 0.0  # set by the loaders, for their log line
        # the poll path's second stage, for the items the linear model is unsure of
        self.static: StaticStage | None = None

    def predict(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        """One Prediction per text; texts come from `item_text`."""
        predictions = self.predict_linear(texts, explain=explain)
        if self.static is not None:
            predictions = self.static.refine(texts, predictions, self.uncertain_below)
        return predictions

    def predict_linear(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        """The linear model's predictions alone (the first stage)."""
        predictions: list[Prediction] = []
        for start in range(0, len(texts), CHUNK_TEXTS):
            predictions += self._predict_chunk(texts[start : start + CHUNK_TEXTS], explain)
        return predictions

    def _predict_chunk(self, texts: Sequence[str], explain: bool) -> list[Prediction]:
        probabilities, blocks = self.scorer.probabilities(list(texts))
        predictions = []
        for row, text in enumerate(texts):
            scores = {
                label: round(float(probabilities[row, column]), 4)
                for column, label in enumerate(self.labels)
            }
            labels, uncertain = decide_labels(scores, self.thresholds, self.uncertain_below)
            why: dict[str, tuple[str, ...]] = {}
            if explain:
                shown = labels or (max(scores, key=scores.__getitem__),)
                why = self._explain(text, blocks, row, shown)
            predictions.append(Prediction(labels, scores, uncertain, why))
        return predictions

    def _explain(
        self, text: str, blocks: Mapping[str, Any], row: int, labels: tuple[str, ...]
    ) -> dict[str, tuple[str, ...]]:
        """Top words by tf-idf weight x coefficient (char n-grams are not readable)."""
        word = next((b for b in self.scorer.branches if b.analyzer == "word"), None)
        if word is None:
            return dict.fromkeys(labels, ())
        rows, cols, values = blocks[word.name]
        mine = rows == row
        weights = dict(zip(cols[mine].tolist(), values[mine].tolist(), strict=True))
        terms = {
            term: hashed_column(term, word.size)
            for term in terms_in(word, text)
            if _HAS_LETTER.search(term) and term not in _WHY_SKIPPED
        }
        why = {}
        for label in labels:
            column = self.labels.index(label)
            # A positive push raises the probability whatever the calibrator's orientation.
            direction = 1.0 if self.scorer.slopes[column] < 0 else -1.0
            pushes = [
                (
                    weights.get(feature, 0.0)
                    * float(self.scorer.weights[word.start + feature, column])
                    * direction,
                    term,
                )
                for term, feature in terms.items()
            ]
            best = sorted((p for p in pushes if p[0] > 0), key=lambda p: (-p[0], p[1]))
            why[label] = tuple(term for _, term in best[:WHY_TERMS])
        return why


def make_linear_classifier(
    scorer: LinearScorer,
    metadata: Mapping[str, Any],
    *,
    uncertain_below: float | None = None,
    pipeline: Any = None,
) -> LinearClassifier:
    """Wrap a scorer with the decision rule its metadata records; ClassifierError."""
    raw = metadata.get("thresholds", {})
    try:
        thresholds = {str(label): float(value) for label, value in dict(raw).items()}
        if uncertain_below is None:
            uncertain_below = float(metadata.get("uncertain_below", DEFAULT_UNCERTAIN_BELOW))
    except (TypeError, ValueError) as exc:
        message = f"bad thresholds in the model metadata ({exc}): run `make model`"
        raise ClassifierError(message) from exc
    if set(thresholds) != set(LABELS):
        raise ClassifierError("model metadata has no threshold for every label: run `make model`")
    if not 0.0 <= uncertain_below <= 1.0:
        raise ClassifierError(f"uncertain_below must be within 0..1, got {uncertain_below}")
    return LinearClassifier(
        scorer,
        version=str(metadata.get("model_version", "unsaved")),
        thresholds=thresholds,
        uncertain_below=uncertain_below,
        pipeline=pipeline,
    )


# --- the runtime file (classifier.npz) -------------------------------------------------------


def scorer_bytes(scorer: LinearScorer) -> bytes:
    """The scorer as an .npz archive with reproducible bytes."""
    return npz_bytes(scorer.arrays())


def scorer_from_bytes(data: bytes) -> LinearScorer:
    """Read what scorer_bytes wrote (no pickle); ValueError on anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return LinearScorer.from_arrays({name: arrays[name] for name in arrays.files})
    except (KeyError, IndexError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        # (np.load refuses, without unpickling, a file that is not an .npz of arrays.)
        raise ValueError(f"not a listener scorer ({exc})") from exc


def load_runtime_classifier(
    model_path: Path, *, uncertain_below: float | None = None
) -> LinearClassifier | None:
    """I/O: the classifier from `model_path`'s .npz runtime arrays, checked against the
    metadata; None when the model has none (saved by an older listener). ClassifierError."""
    started = time.perf_counter()
    metadata, _ = read_model_files(model_path)
    expected = metadata.get("runtime_sha256")
    path = runtime_path(model_path)
    if expected is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClassifierError(f"cannot read the model in {path}: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != expected:
        raise ClassifierError(
            f"{path} does not match {model_path.with_suffix('.json')} (checksum differs): "
            "the files come from different trainings; run `make model`"
        )
    try:
        scorer = scorer_from_bytes(data)
    except ValueError as exc:
        raise ClassifierError(f"{path}: {exc}") from exc
    classifier = make_linear_classifier(scorer, metadata, uncertain_below=uncertain_below)
    classifier.static = read_static_stage(model_path, classifier.version)
    classifier.load_ms = round((time.perf_counter() - started) * 1000, 1)
    classifier.files = ModelFiles(model_path, uncertain_below)
    return classifier


def read_static_stage(model_path: Path, version: str) -> StaticStage | None:
    """I/O: the static stage beside a model, None when it has none (a model trained before
    it existed scores with its linear model alone); ClassifierError when it is unreadable or
    made for another model."""
    path = static_path(model_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClassifierError(f"cannot read {path}: {exc}") from exc
    try:
        stage = static_from_bytes(data)
    except ValueError as exc:
        raise ClassifierError(f"{path}: {exc}") from exc
    if stage.head.pairs_with != version:
        raise ClassifierError(
            f"{path} was made for model {stage.head.pairs_with}, not {version}: "
            f"{retrain_hint(model_path)}"
        )
    return stage


_LOADED: dict[ModelFiles, LinearClassifier] = {}


def predict_from_files(
    files: ModelFiles, version: str, pairs: Sequence[tuple[str, str]]
) -> list[Prediction]:
    """In a poll's worker process: predictions for (title, summary) pairs by the model in
    `files`, loaded once per process; ClassifierError unless it is model `version` (the
    files may have been replaced since the poller loaded them)."""
    classifier = _LOADED.get(files)
    if classifier is None:
        loaded = load_runtime_classifier(files.path, uncertain_below=files.uncertain_below)
        if loaded is None:
            raise ClassifierError(f"{files.path} has no .npz arrays to score with")
        classifier = _LOADED[files] = loaded
    if classifier.version != version:
        raise ClassifierError(f"{files.path} is model {classifier.version}, not {version}")
    return classifier.predict([item_text(title, summary) for title, summary in pairs])
