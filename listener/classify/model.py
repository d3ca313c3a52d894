"""Pure: business-function labels for items, from a linear scikit-learn model.

`item_text` alone decides what the model sees, `decide_labels` turns calibrated scores into
0-2 labels, and `LinearClassifier` wraps a fitted pipeline (built in `listener.classify.training`).
Only `load_classifier` does I/O: it reads `models/classifier.skops` with skops (no unpickling)
and checks it against `models/classifier.json` before anything uses it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sklearn
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

from listener.domain import LABELS
from listener.errors import ClassifierError
from listener.feeds.text import clean_text

OTHER = "other"
MAX_LABELS = 2
DEFAULT_UNCERTAIN_BELOW = 0.5
METADATA_FORMAT = 1

# Bump when item_text changes what the model sees: a model trained on other text is refused.
ITEM_TEXT_VERSION = 2
# The title is the densest signal and feed summaries run to hundreds of words; the lead
# carries the topic, and vectorising only it keeps classification at several thousand
# items/s per core (the cost is linear in the characters the analyzers see). A 400-char
# lead scored the same on real items (issue 10) at 30% more cost.
LEAD_CHARS = 250
TITLE_REPEAT = 2
_MAX_TITLE_CHARS = 300
WHY_TERMS = 5

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

_COMBINING = re.compile("[\u0300-\u036f]")
_FOLD = str.maketrans({"’": "'", "‘": "'", "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"})
# Cheap signs that text was not cleaned (markup, entities, UTF-8 read as windows-1252);
# only then is clean_text worth its cost.
_DIRTY_MARKERS = ("<", "&", "Ã", "Â", "â€")
_HAS_LETTER = re.compile(r"[^\W\d_]")
# What feed software wraps around a summary and says nothing about its topic: WordPress's
# "The post X appeared first on Y." (and its French version), a "By NAME Posted on DATE"
# byline, "Read more" / "Continue reading" links and what follows them, "[…]".
_BOILERPLATE = (
    (
        ("appeared first on", "apparu en premier sur"),
        re.compile(
            r"\b(?:the post|l['’]article)\b.{0,300}?"
            r"\b(?:appeared first on|est apparu en premier sur)\b.*",
            re.I | re.S,
        ),
    ),
    (
        ("posted on", "publié le", "publie le"),
        re.compile(
            r"\b(?:by|par)\s[^.]{1,60}?\s(?:posted on|publi[ée] le)\s"
            r"\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}",
            re.I,
        ),
    ),
    (
        ("continue reading", "share this", "partager"),
        re.compile(r"\b(?:continue reading|share this\s*:|partager\s*:).*", re.I | re.S),
    ),
    (
        ("read more", "lire la suite"),
        re.compile(r"\b(?:read more|lire la suite)\s*[→»›.…]*\s*$", re.I),
    ),
    (("[…]", "[...]"), re.compile(r"\[(?:…|\.\.\.)\]")),
)
# Link aggregators put only this in the summary of a discussion item.
_EMPTY_SUMMARIES = frozenset({"comments", "commentaires"})
_TITLE_ECHO_TRIM = " :.-–—|"
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
class Prediction:
    """Labels for one item: 0-2 labels ordered by score, every label's score, and why."""

    labels: tuple[str, ...]  # when nothing passes a threshold: the best guess, uncertain
    scores: Mapping[str, float]  # every label -> calibrated probability, 4 decimals
    uncertain: bool
    # label -> top terms that pushed it (only with explain=True), for the assigned labels
    # (or the top label when none is assigned)
    why: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Classifier(Protocol):
    version: str
    labels: tuple[str, ...]

    def predict(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        """One Prediction per text; texts come from `item_text`."""
        ...


def item_text(title: str, summary: str) -> str:
    """What the model sees: the title (twice) and the summary's lead, lower-cased, unaccented.

    The summary loses what feed software adds to it (the title repeated at its start,
    bylines, "The post ... appeared first on ...", "Read more"), so the lead is its topic.
    """
    title = title[:_MAX_TITLE_CHARS]
    summary = strip_boilerplate(title, summary[: LEAD_CHARS + len(title) + 200])
    if len(summary) > LEAD_CHARS:
        cut = summary[:LEAD_CHARS]
        space = cut.rfind(" ")
        summary = cut[:space] if space > LEAD_CHARS // 2 else cut  # no half word at the end
    text = " ".join([title] * TITLE_REPEAT + [summary])
    if any(marker in text for marker in _DIRTY_MARKERS):
        text = clean_text(text)  # text from `listener classify` may not have been parsed
    text = text.lower()
    if not text.isascii():
        # "Équipe" and "equipe" must be one feature: feeds and people drop accents.
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text.translate(_FOLD)))
    return " ".join(text.split())


def strip_boilerplate(title: str, summary: str) -> str:
    """Pure: the summary without the title echoed at its start and feed boilerplate."""
    if title and summary.startswith(title):
        summary = summary[len(title) :].lstrip(_TITLE_ECHO_TRIM)
    folded = summary.lower()
    for markers, pattern in _BOILERPLATE:
        # Substring tests first: the regexes cost a tenth of classification when always run.
        if any(marker in folded for marker in markers):
            summary = pattern.sub(" ", summary)
    summary = summary.strip()
    return "" if summary.lower() in _EMPTY_SUMMARIES else summary


def decide_labels(
    scores: Mapping[str, float],
    thresholds: Mapping[str, float],
    uncertain_below: float,
    max_labels: int = MAX_LABELS,
) -> tuple[tuple[str, ...], bool]:
    """Labels whose score reaches their threshold, best first, at most `max_labels`.

    "other" is exclusive: it wins alone when it is the best passing label and is dropped
    otherwise. Uncertain when nothing passes or the best score is below `uncertain_below`.
    When nothing passes, the best-scored label is still given as a guess, flagged uncertain:
    `listener classify` users get an answer, while the store's `item_labels` view and the
    digest leave uncertain items out of every function until a person decides.
    """
    ranked = sorted(scores, key=lambda label: -scores[label])  # stable: ties keep label order
    passing = [label for label in ranked if scores[label] >= thresholds.get(label, 0.5)]
    if passing and passing[0] == OTHER:
        chosen: tuple[str, ...] = (OTHER,)
    else:
        chosen = tuple(label for label in passing if label != OTHER)[:max_labels]
    best = scores[ranked[0]] if ranked else 0.0
    if not chosen:
        return ((ranked[0],) if best > 0 else ()), True
    return chosen, best < uncertain_below


# A label at 0.6 with the next at 0.1 is still worth a look (priority 0.46); one at 0.95 with
# the next at 0.03 is not (0.07).
REVIEW_MIN_PRIORITY = 0.35


def review_priority(scores: Mapping[str, float], feed_corrections: int) -> float:
    """Pure: how much a correction of this item would teach the model, in 0..1.

    Near a decision boundary (the two best scores close, or the best one low) a correction
    moves the model most; a feed nobody has corrected yet has the most to gain, so each
    correction already made on the item's feed halves the priority of the next one.
    """
    ranked = [*sorted(scores.values(), reverse=True), 0.0, 0.0]
    best, second = ranked[0], ranked[1]
    closeness = 1.0 - min(1.0, max(0.0, best - second))  # 1 when two labels tie
    doubt = 1.0 - min(1.0, max(0.0, best))  # 1 when no label is likely
    return (0.6 * closeness + 0.4 * doubt) / 2.0 ** max(0, feed_corrections)


def rank_for_review(candidates: Sequence[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """Pure: the `limit` candidates (with `scores`, `uncertain` and `feed_corrections`) worth
    most, best first; ties keep the candidates' order (newest first from the store). A
    confident prediction (priority below REVIEW_MIN_PRIORITY before the feed's corrections
    are counted) is left out unless it is flagged uncertain."""
    priorities = [
        review_priority(candidate["scores"], int(candidate["feed_corrections"]))
        for candidate in candidates
    ]
    kept = [
        at
        for at, candidate in enumerate(candidates)
        if candidate.get("uncertain")
        or review_priority(candidate["scores"], 0) >= REVIEW_MIN_PRIORITY
    ]
    order = sorted(kept, key=lambda at: -priorities[at])
    return [{**candidates[at], "priority": round(priorities[at], 4)} for at in order[:limit]]


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
    metadata_path = model_path.with_suffix(".json")
    for path in (model_path, metadata_path):
        if not path.is_file():
            raise ClassifierError(f"model file {path} not found: run `make model` to build it")
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        data = model_path.read_bytes()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifierError(f"cannot read the model in {model_path}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ClassifierError(f"{metadata_path}: not a JSON object: run `make model`")
    check_metadata(metadata, metadata_path)
    if metadata.get("artifact_sha256") != hashlib.sha256(data).hexdigest():
        raise ClassifierError(
            f"{metadata_path} does not describe {model_path} (checksum differs): "
            "the two files come from different trainings; run `make model`"
        )
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


def check_metadata(metadata: Mapping[str, Any], where: Path | str) -> None:
    """ClassifierError unless the metadata's labels, sklearn version and input match ours."""
    labels = metadata.get("labels")
    if labels != list(LABELS):
        raise ClassifierError(
            f"{where}: the model's labels {labels} differ from listener's {list(LABELS)}: "
            "retrain it with `make model`"
        )
    trained_with = str(metadata.get("sklearn_version", "unknown"))
    if _major_minor(trained_with) != _major_minor(sklearn.__version__):
        raise ClassifierError(
            f"{where}: model trained with scikit-learn {trained_with}, this environment has "
            f"{sklearn.__version__}: install scikit-learn {'.'.join(_major_minor(trained_with))}.x "
            "(listener's own requirement) or retrain it with `listener model train`"
        )
    if metadata.get("item_text_version") != ITEM_TEXT_VERSION:
        raise ClassifierError(
            f"{where}: the model was trained on item text version "
            f"{metadata.get('item_text_version')}, this listener makes version "
            f"{ITEM_TEXT_VERSION}: run `make model`"
        )


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


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
