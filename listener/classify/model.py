"""Pure: business-function labels for items, from a linear scikit-learn model.

`item_text` alone decides what the model sees, `decide_labels` turns calibrated scores into
0-2 labels, and `LinearClassifier` wraps a fitted pipeline (built in `listener.classify.training`).
Only `load_classifier` does I/O: it reads `models/classifier.skops` with skops (no unpickling)
and checks it against `models/classifier.json` before anything uses it.
"""

from __future__ import annotations

import re
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.utils import murmurhash3_32
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2
from skops.io.exceptions import UntrustedTypesFoundException

# Re-exported: the model's API (training, the CLI, benches, tests) stays one import.
from listener.classify.decision import (
    DEFAULT_UNCERTAIN_BELOW,
    ITEM_TEXT_VERSION,
    LEAD_CHARS,
    MAX_LABELS,
    METADATA_FORMAT,
    OTHER,
    REVIEW_MIN_PRIORITY,
    TITLE_REPEAT,
    WHY_TERMS,
    Classifier,
    Prediction,
    check_metadata,
    decide_labels,
    item_text,
    rank_for_review,
    review_priority,
    strip_boilerplate,
)
from listener.classify.deferred import read_model_files
from listener.domain import LABELS
from listener.errors import ClassifierError

__all__ = [
    "DEFAULT_UNCERTAIN_BELOW",
    "ITEM_TEXT_VERSION",
    "LEAD_CHARS",
    "MAX_LABELS",
    "METADATA_FORMAT",
    "OTHER",
    "REVIEW_MIN_PRIORITY",
    "TITLE_REPEAT",
    "TRUSTED_TYPES",
    "WHY_TERMS",
    "Classifier",
    "LinearClassifier",
    "Prediction",
    "check_metadata",
    "decide_labels",
    "item_text",
    "load_classifier",
    "make_classifier",
    "rank_for_review",
    "review_priority",
    "strip_boilerplate",
]

# Every type the shipped pipeline is made of (skops trusts numpy/builtin containers itself).
# Loading anything else fails, so a tampered artifact cannot smuggle in a callable.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.feature_extraction.text.HashingVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.svm._classes.LinearSVC",
)
# What a corrupt or foreign file makes skops raise while reading it.
_UNREADABLE = (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, AttributeError)

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


class LinearClassifier:
    """A fitted pipeline (features -> one-vs-rest linear model) and its decision rule.

    Scores are computed from the pipeline's own hashers, idf weights, coefficients and
    sigmoid calibrators, without going through scikit-learn's predict_proba: its per-call
    input validation (about 5 ms for 6 labels) would dominate the small batches a poll
    classifies. tests/test_classify.py checks both give the same probabilities.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        version: str,
        thresholds: Mapping[str, float],
        uncertain_below: float,
        labels: tuple[str, ...] = LABELS,
    ) -> None:
        self.version = version
        self.labels = labels
        self.thresholds = dict(thresholds)
        self.uncertain_below = uncertain_below
        self.pipeline = pipeline
        self.load_ms = 0.0  # set by load_classifier, for its log line
        self._branches, weights = _branches(pipeline.named_steps["features"])
        linear = [_linear_parts(e) for e in pipeline.named_steps["classifier"].estimators_]
        if len(linear) != len(labels) or any(w.shape != (weights,) for w, *_ in linear):
            raise ClassifierError("the model's features and coefficients disagree")
        # (n_features, n_labels): one matrix product scores every label at once.
        self._weights = np.column_stack([w for w, *_ in linear]).astype(np.float32)
        self._intercepts = np.array([i for _, i, _, _ in linear], dtype=np.float64)
        self._slopes = np.array([a for _, _, a, _ in linear], dtype=np.float64)
        self._offsets = np.array([b for _, _, _, b in linear], dtype=np.float64)

    def predict(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        """One Prediction per text; texts come from `item_text`."""
        if not texts:
            return []
        probabilities, word_matrix = self._probabilities(list(texts))
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
                why = self._explain(text, word_matrix, row, shown)
            predictions.append(Prediction(labels, scores, uncertain, why))
        return predictions

    def _probabilities(self, texts: list[str]) -> tuple[Any, Any]:
        """(n_texts, n_labels) calibrated probabilities, and the word features for `why`."""
        decision = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        word_matrix = None
        for branch in self._branches:
            matrix = branch.hasher.transform(texts)
            if branch.sublinear_tf:
                np.log(matrix.data, matrix.data)
                matrix.data += 1.0
            matrix.data *= branch.idf[matrix.indices]
            if branch.l2_norm:
                inplace_csr_row_normalize_l2(matrix)
            decision += matrix @ self._weights[branch.start : branch.start + branch.size]
            if branch.name == "word":
                word_matrix = matrix
        decision += self._intercepts
        return expit(-(self._slopes * decision + self._offsets)), word_matrix

    def _explain(
        self, text: str, matrix: Any, row: int, labels: tuple[str, ...]
    ) -> dict[str, tuple[str, ...]]:
        """Top words by tf-idf weight x coefficient (char n-grams are not readable)."""
        word = next((b for b in self._branches if b.name == "word"), None)
        if word is None or matrix is None:
            return dict.fromkeys(labels, ())
        span = slice(matrix.indptr[row], matrix.indptr[row + 1])
        weights = dict(zip(matrix.indices[span].tolist(), matrix.data[span].tolist(), strict=True))
        terms = {
            term: _hashed_column(term, word.size)
            for term in word.hasher.build_analyzer()(text)
            if _HAS_LETTER.search(term) and term not in _WHY_SKIPPED
        }
        why = {}
        for label in labels:
            column = self.labels.index(label)
            # A positive push raises the probability whatever the calibrator's orientation.
            direction = 1.0 if self._slopes[column] < 0 else -1.0
            pushes = [
                (
                    weights.get(feature, 0.0)
                    * float(self._weights[word.start + feature, column])
                    * direction,
                    term,
                )
                for term, feature in terms.items()
            ]
            best = sorted((p for p in pushes if p[0] > 0), key=lambda p: (-p[0], p[1]))
            why[label] = tuple(term for _, term in best[:WHY_TERMS])
        return why


@dataclass(frozen=True, slots=True)
class _Branch:
    """One hashed feature block of the pipeline: where its columns start and its tf-idf."""

    name: str
    hasher: Any  # HashingVectorizer (norm=None)
    idf: Any  # float32 array
    sublinear_tf: bool
    l2_norm: bool
    start: int
    size: int


def _branches(features: Any) -> tuple[list[_Branch], int]:
    """The feature blocks of a FeatureUnion of (HashingVectorizer -> TfidfTransformer)."""
    branches, start = [], 0
    for name, branch in getattr(features, "transformer_list", []):
        steps = [step for _, step in getattr(branch, "steps", [])]
        if not (
            len(steps) == 2
            and isinstance(steps[0], HashingVectorizer)
            and steps[0].norm is None
            and isinstance(steps[1], TfidfTransformer)
            and steps[1].norm in (None, "l2")
        ):
            raise ClassifierError(f"unexpected feature branch {name!r} in the model")
        hasher, tfidf = steps
        idf = np.asarray(tfidf.idf_, dtype=np.float32)
        norm = tfidf.norm == "l2"
        size = hasher.n_features
        branches.append(_Branch(name, hasher, idf, tfidf.sublinear_tf, norm, start, size))
        start += size
    if not branches:
        raise ClassifierError("the model has no feature branches")
    return branches, start


def _linear_parts(estimator: Any) -> tuple[Any, float, float, float]:
    """(weights, intercept, a, b) with probability = 1 / (1 + exp(a * decision + b))."""
    if isinstance(estimator, CalibratedClassifierCV):
        calibrated = estimator.calibrated_classifiers_[0]
        linear, calibrator = calibrated.estimator, calibrated.calibrators[0]
        slope, offset = float(calibrator.a_), float(calibrator.b_)
    elif isinstance(estimator, LogisticRegression):
        linear, slope, offset = estimator, -1.0, 0.0
    else:
        raise ClassifierError(f"unexpected estimator {type(estimator).__name__} in the model")
    intercept = float(np.ravel(linear.intercept_)[0]) if linear.fit_intercept else 0.0
    return np.ravel(linear.coef_), intercept, slope, offset


def make_classifier(
    pipeline: Any, metadata: Mapping[str, Any], *, uncertain_below: float | None = None
) -> LinearClassifier:
    """Wrap a fitted pipeline with the decision rule its metadata records."""
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
        pipeline,
        version=str(metadata.get("model_version", "unsaved")),
        thresholds=thresholds,
        uncertain_below=uncertain_below,
    )


def load_classifier(model_path: Path, *, uncertain_below: float | None = None) -> Classifier:
    """I/O: read and check `model_path` (.skops) and its `.json` metadata; ClassifierError."""
    metadata, data = read_model_files(model_path)
    started = time.perf_counter()
    try:
        pipeline = skops.io.loads(data, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise ClassifierError(
            f"{model_path} contains types outside the allow-list ({exc}); refusing to load "
            "it: rebuild it with `make model`"
        ) from exc
    except _UNREADABLE as exc:
        raise ClassifierError(f"{model_path} is not a readable skops model: {exc}") from exc
    _check_pipeline(pipeline, model_path)
    classifier = make_classifier(pipeline, metadata, uncertain_below=uncertain_below)
    classifier.load_ms = round((time.perf_counter() - started) * 1000, 1)
    return classifier


def _check_pipeline(pipeline: Any, where: Path) -> None:
    # skops trusts every scikit-learn estimator by default; insist on the shape we ship.
    ok = (
        isinstance(pipeline, Pipeline)
        and list(pipeline.named_steps) == ["features", "classifier"]
        and isinstance(pipeline.named_steps["classifier"], OneVsRestClassifier)
        and len(getattr(pipeline.named_steps["classifier"], "estimators_", ())) == len(LABELS)
        and all(
            isinstance(estimator, (CalibratedClassifierCV, LogisticRegression))
            for estimator in pipeline.named_steps["classifier"].estimators_
        )
    )
    if not ok:
        raise ClassifierError(f"{where} is not a listener classifier: run `make model`")


def _hashed_column(term: str, n_features: int) -> int:
    """The column HashingVectorizer gives `term` (sklearn's _hashing_fast.transform)."""
    hashed = int(murmurhash3_32(term, seed=0))
    if hashed == -(2**31):
        return (2**31 - 1 - (n_features - 1)) % n_features
    return abs(hashed) % n_features
