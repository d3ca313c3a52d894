"""Pure: business-function labels for items, from a linear scikit-learn model.

`item_text` alone decides what the model sees, `decide_labels` turns calibrated scores into
0-2 labels, and `make_classifier` wraps a fitted pipeline (built in
`listener.classify.training`) as a `LinearClassifier`, which scores with the pipeline's arrays
in numpy (`listener.classify.linear`). Only `load_classifier` does I/O: it reads
`models/classifier.skops` with skops (no unpickling) and checks it against
`models/classifier.json` before anything uses it.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
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
from listener.classify.linear import (
    ANALYZERS,
    WORD_PATTERN,
    Branch,
    LinearClassifier,
    LinearScorer,
    make_linear_classifier,
    read_static_stage,
)
from listener.classify.linear import hashed_column as _hashed_column
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
    "_hashed_column",
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


def scorer_from_pipeline(pipeline: Any) -> LinearScorer:
    """The arrays a fitted pipeline scores with (see listener.classify.linear)."""
    branches, start = [], 0
    for name, branch in getattr(pipeline.named_steps["features"], "transformer_list", []):
        steps = [step for _, step in getattr(branch, "steps", [])]
        if not (
            len(steps) == 2
            and isinstance(steps[0], HashingVectorizer)
            and steps[0].norm is None
            and not steps[0].alternate_sign
            and not steps[0].binary
            and steps[0].analyzer in ANALYZERS
            and steps[0].lowercase
            and steps[0].strip_accents is None
            and steps[0].preprocessor is None
            and steps[0].tokenizer is None
            and steps[0].stop_words is None
            and (steps[0].analyzer != "word" or steps[0].token_pattern == WORD_PATTERN)
            and isinstance(steps[1], TfidfTransformer)
            and steps[1].norm in (None, "l2")
        ):
            raise ClassifierError(f"unexpected feature branch {name!r} in the model")
        hasher, tfidf = steps
        idf = np.asarray(tfidf.idf_, dtype=np.float32)
        if idf.shape != (hasher.n_features,):
            raise ClassifierError(f"feature branch {name!r}: idf and hasher sizes differ")
        low, high = (int(n) for n in hasher.ngram_range)
        norm = tfidf.norm == "l2"
        branches.append(
            Branch(name, hasher.analyzer, (low, high), idf, bool(tfidf.sublinear_tf), norm, start)
        )
        start += hasher.n_features
    if not branches:
        raise ClassifierError("the model has no feature branches")
    linear = [_linear_parts(e) for e in pipeline.named_steps["classifier"].estimators_]
    if any(w.shape != (start,) for w, *_ in linear):
        raise ClassifierError("the model's features and coefficients disagree")
    return LinearScorer(
        tuple(branches),
        # (n_features, n_labels): one matrix product scores every label at once.
        np.column_stack([w for w, *_ in linear]).astype(np.float32),
        np.array([i for _, i, _, _ in linear], dtype=np.float64),
        np.array([a for _, _, a, _ in linear], dtype=np.float64),
        np.array([b for _, _, _, b in linear], dtype=np.float64),
    )


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
    return make_linear_classifier(
        scorer_from_pipeline(pipeline), metadata, uncertain_below=uncertain_below, pipeline=pipeline
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
    classifier.static = read_static_stage(model_path, classifier.version)
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
