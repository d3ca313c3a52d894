from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from listener.classify.model import (
    LABELS,
    LEAD_CHARS,
    LinearClassifier,
    Prediction,
    _hashed_column,
    decide_labels,
    item_text,
    load_classifier,
    make_classifier,
    rank_for_review,
    review_priority,
    strip_boilerplate,
)
from listener.classify.training import save_classifier
from listener.errors import ClassifierError
from tests.classifier_data import tiny_model

COMMITTED_MODEL = Path(__file__).parent.parent / "models" / "classifier.skops"
THRESHOLDS = dict.fromkeys(LABELS, 0.5)


def scores(**given: float) -> dict[str, float]:
    return {label: given.get(label, 0.0) for label in LABELS}


# --- decide_labels -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected", "uncertain"),
    [
        ({"marketing": 0.9}, ("marketing",), False),
        ({"marketing": 0.7, "communication": 0.8}, ("communication", "marketing"), False),
        # at most two labels, the best ones
        (
            {"marketing": 0.7, "communication": 0.8, "human_resources": 0.6},
            ("communication", "marketing"),
            False,
        ),
        # "other" is exclusive: alone when it is the best passing label ...
        ({"other": 0.9, "marketing": 0.6}, ("other",), False),
        # ... and dropped when another label beats it
        ({"other": 0.6, "marketing": 0.9}, ("marketing",), False),
        # nothing passes: the best label as a guess, flagged uncertain
        ({"marketing": 0.4, "other": 0.3}, ("marketing",), True),
        ({"other": 0.4, "marketing": 0.3}, ("other",), True),
        ({}, (), True),
        # passes its threshold but the best score is below uncertain_below (0.5 here)
        ({"customer_service": 0.45}, ("customer_service",), True),
    ],
)
def test_decide_labels(given: dict[str, float], expected: tuple[str, ...], uncertain: bool) -> None:
    thresholds = {**THRESHOLDS, "customer_service": 0.4}
    assert decide_labels(scores(**given), thresholds, 0.5) == (expected, uncertain)


def test_decide_labels_honours_max_labels_and_uncertain_below() -> None:
    given = scores(marketing=0.9, communication=0.8)
    assert decide_labels(given, THRESHOLDS, 0.95, max_labels=1) == (("marketing",), True)


# --- item_text -----------------------------------------------------------------------------


def test_item_text_is_title_twice_and_the_summary_lead_folded() -> None:
    text = item_text("L’Équipe RH recrute", "Œuvres sociales et congés. " * 50)
    assert text.startswith("l'equipe rh recrute l'equipe rh recrute oeuvres sociales et conges")
    lead = item_text("", "Sociales et congés. " * 50)
    assert len(lead) <= LEAD_CHARS
    assert lead.endswith(("sociales", "et", "conges."))  # cut at a word boundary


def test_item_text_bounds_what_the_model_sees() -> None:
    text = item_text("x" * 5_000, "word " * 5_000)
    assert len(text) <= 2 * 300 + LEAD_CHARS + 2


def test_item_text_cleans_markup_entities_and_mojibake() -> None:
    text = item_text("R&eacute;sultats <b>annuels</b>", "Le groupe publie ses rÃ©sultats")
    assert text == "resultats annuels resultats annuels le groupe publie ses resultats"


@pytest.mark.parametrize(
    ("title", "summary", "expected"),
    [
        ("Acme hires", "Acme hires 40 nurses in Lyon", "40 nurses in Lyon"),
        ("Acme hires", "Acme hires: the plan", "the plan"),
        # a title parse_feed made from the start of the summary of an item without one
        ("Our API is down for some users,…", "Our API is down for some users, sorry!", "sorry!"),
        ("Acme hires…", "Acme fires 10", "Acme fires 10"),
        ("T", "Pay rises. The post T appeared first on Acme Blog.", "Pay rises."),
        ("T", "Salaires. L’article T est apparu en premier sur Le Blog.", "Salaires."),
        ("T", "By Jo Doe Posted on 07-17-2021 We are hiring", "We are hiring"),
        ("T", "Par Léa Roy Publié le 02/03/2022 On recrute", "On recrute"),
        ("T", "A new plan for stores. Read more", "A new plan for stores."),
        ("T", "Une nouvelle offre […] Lire la suite →", "Une nouvelle offre"),
        ("T", "Comments", ""),
        (
            "T",
            "Read more about our plan to partager nos données",
            "Read more about our plan to partager nos données",
        ),
        ("T", "Rooms. Share this: Twitter Facebook", "Rooms."),
        ("T", "Our support team reads more tickets", "Our support team reads more tickets"),
        # a news aggregator's "Headline - Source" title, its summary "Headline Source" and
        # the related headlines
        (
            "Acme names a new chief executive after the merger - Daily Wire",
            "Acme names a new chief executive after the merger\xa0\xa0Daily Wire Acme CEO out",
            "Acme CEO out",
        ),
        (
            "Acme names a new chief executive after the merger - Daily Wire",
            "Acme names a new chief executive after the merger, its board says",
            "its board says",
        ),
        # not an echo: a short headline, or one that ends inside the summary's word
        ("Prices - a guide", "Prices rise in May", "Prices rise in May"),
        (
            "Acme reports record quarterly revenue - Wire",
            "Acme reports record quarterly revenues again",
            "Acme reports record quarterly revenues again",
        ),
    ],
)
def test_strip_boilerplate_keeps_only_what_the_item_is_about(
    title: str, summary: str, expected: str
) -> None:
    assert " ".join(strip_boilerplate(title, summary).split()) == expected


def test_item_text_handles_empty_fields() -> None:
    assert item_text("", "") == ""
    assert item_text("Title", "") == "title title"


# --- the tiny model ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny() -> tuple[Any, dict[str, Any]]:
    return tiny_model()


@pytest.fixture(scope="session")
def classifier(tiny: tuple[Any, dict[str, Any]]) -> LinearClassifier:
    return make_classifier(*tiny)


TINY_TITLES = [
    ("Hiring a senior recruiter for our HR team", "human_resources"),
    ("Nous recrutons des conseillers RH", "human_resources"),
    ("Press release: statement from the CEO", "communication"),
    ("Le marché de la distribution progresse selon une étude", "business_intelligence"),
    ("App outage: customers cannot log in", "customer_service"),
    ("New ad campaign on Instagram", "marketing"),
]


@pytest.mark.parametrize(("title", "label"), TINY_TITLES)
def test_tiny_model_gets_obvious_items_right(
    classifier: LinearClassifier, title: str, label: str
) -> None:
    [prediction] = classifier.predict([item_text(title, "")])
    assert max(prediction.scores, key=prediction.scores.__getitem__) == label


def test_predict_returns_rounded_scores_for_every_label(classifier: LinearClassifier) -> None:
    predictions = classifier.predict([item_text("Quarterly results", ""), item_text("", "")])
    assert len(predictions) == 2
    for prediction in predictions:
        assert tuple(prediction.scores) == LABELS
        assert all(0.0 <= s <= 1.0 and round(s, 4) == s for s in prediction.scores.values())
        assert prediction.why == {}
    assert classifier.predict([]) == []


def test_scores_equal_the_pipelines_predict_proba(classifier: LinearClassifier) -> None:
    texts = [item_text(title, "") for title, _ in TINY_TITLES] + [item_text("", "")]
    expected = classifier.pipeline.predict_proba(texts)
    got = [[p.scores[label] for label in LABELS] for p in classifier.predict(texts)]
    np.testing.assert_allclose(got, expected, atol=6e-5)


def test_explain_names_the_words_that_pushed_the_label(classifier: LinearClassifier) -> None:
    text = item_text("We are hiring a recruiter", "Join the talent team")
    [prediction] = classifier.predict([text], explain=True)
    shown = prediction.labels or (max(prediction.scores, key=prediction.scores.__getitem__),)
    assert set(prediction.why) == set(shown)
    terms = prediction.why["human_resources"]
    assert 0 < len(terms) <= 5
    assert "hiring" in terms
    assert not {"we", "are", "a", "the"} & set(terms)  # function words are not reasons


def test_hashed_column_matches_hashing_vectorizer() -> None:
    hasher = HashingVectorizer(n_features=2**10, alternate_sign=False, norm=None)
    for term in ["recrutement", "customer", "équipe", "rh"]:
        column = hasher.transform([term]).nonzero()[1]
        assert list(column) == [_hashed_column(term, 2**10)]


# --- save / load ---------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path, tiny: tuple[Any, dict[str, Any]]) -> Path:
    path = tmp_path / "classifier.skops"
    save_classifier(*tiny, path)
    return path


def rewrite_metadata(path: Path, **changes: Any) -> None:
    metadata_path = path.with_suffix(".json")
    metadata = json.loads(metadata_path.read_text())
    metadata.update(changes)
    metadata_path.write_text(json.dumps(metadata))


def test_save_load_round_trip(saved: Path, classifier: LinearClassifier) -> None:
    loaded = load_classifier(saved)
    texts = [item_text("Nous recrutons", "équipe RH"), item_text("Market report", "")]
    assert loaded.predict(texts, explain=True) == classifier.predict(texts, explain=True)
    assert loaded.labels == LABELS
    assert loaded.version == json.loads(saved.with_suffix(".json").read_text())["model_version"]


def test_load_uses_uncertain_below_override(saved: Path) -> None:
    [prediction] = load_classifier(saved, uncertain_below=1.0).predict([""])
    assert isinstance(prediction, Prediction)
    assert prediction.uncertain


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        ClassifierError, match="not found: train it with `listener model train --output "
    ):
        load_classifier(tmp_path / "classifier.skops")


def test_load_refuses_missing_metadata(saved: Path) -> None:
    saved.with_suffix(".json").unlink()
    with pytest.raises(ClassifierError, match=r"classifier\.json not found"):
        load_classifier(saved)


def test_load_refuses_other_labels(saved: Path) -> None:
    rewrite_metadata(saved, labels=["marketing", "other"])
    with pytest.raises(ClassifierError, match=r"labels .* differ"):
        load_classifier(saved)


def test_load_refuses_another_sklearn_version(saved: Path) -> None:
    rewrite_metadata(saved, sklearn_version="0.24.2")
    with pytest.raises(
        ClassifierError,
        match=r"model trained with scikit-learn 0\.24\.2, .*install scikit-learn 0\.24\.x",
    ):
        load_classifier(saved)


def test_load_refuses_a_model_of_another_item_text_and_says_how_to_retrain_it(
    saved: Path,
) -> None:
    from listener.classify.decision import ITEM_TEXT_VERSION

    rewrite_metadata(saved, item_text_version=ITEM_TEXT_VERSION - 1)
    with pytest.raises(ClassifierError) as refused:
        load_classifier(saved)
    message = str(refused.value)
    assert f"trained on item text version {ITEM_TEXT_VERSION - 1}" in message
    # A deployment's own model is rebuilt by the CLI, never over the shipped one.
    assert f"`listener model train --include-corrections --output {saved}`" in message


@pytest.mark.parametrize("thresholds", [{"marketing": 0.5}, dict.fromkeys(LABELS, "high"), "0.5"])
def test_load_refuses_bad_thresholds(saved: Path, thresholds: object) -> None:
    rewrite_metadata(saved, thresholds=thresholds)
    with pytest.raises(ClassifierError, match="threshold"):
        load_classifier(saved)


def test_load_refuses_metadata_of_another_training(saved: Path) -> None:
    rewrite_metadata(saved, artifact_sha256="0" * 64)
    with pytest.raises(ClassifierError, match="checksum differs"):
        load_classifier(saved)


def test_load_refuses_a_disallowed_type(saved: Path) -> None:
    tampered = Pipeline([("features", FunctionTransformer(json.dumps)), ("classifier", None)])
    skops.io.dump(tampered, saved)
    rewrite_metadata(saved, artifact_sha256=_sha256(saved))
    with pytest.raises(ClassifierError, match="allow-list"):
        load_classifier(saved)


def test_load_refuses_a_file_that_is_not_a_model(saved: Path) -> None:
    saved.write_bytes(b"not a zip")
    rewrite_metadata(saved, artifact_sha256=_sha256(saved))
    with pytest.raises(ClassifierError, match="not a readable skops model"):
        load_classifier(saved)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the committed model -------------------------------------------------------------------


def test_committed_model_labels_english_and_french_hr_items() -> None:
    classifier = load_classifier(COMMITTED_MODEL)
    predictions = classifier.predict(
        [
            item_text(
                "We're hiring: HR business partner",
                "Join our people team to support managers with recruiting and onboarding.",
            ),
            item_text(
                "Offre d'emploi : responsable des ressources humaines",
                "Vous piloterez le recrutement, la formation et les relations sociales.",
            ),
        ]
    )
    assert [p.labels[:1] for p in predictions] == [("human_resources",), ("human_resources",)]


# --- review ----------------------------------------------------------------------------------


def test_review_priority_prefers_close_calls_and_uncorrected_feeds() -> None:
    tie = {"marketing": 0.45, "communication": 0.44, "other": 0.05}
    clear = {"marketing": 0.95, "communication": 0.03, "other": 0.02}
    assert review_priority(tie, 0) > review_priority(clear, 0)
    assert review_priority(tie, 0) > review_priority(tie, 1) > review_priority(tie, 3)
    assert 0.0 <= review_priority({}, 0) <= 1.0


def test_rank_for_review_orders_by_priority_and_keeps_ties_in_order() -> None:
    tie = {"marketing": 0.45, "communication": 0.44}
    candidates = [
        {"id": 0, "scores": {"marketing": 0.97, "other": 0.02}, "feed_corrections": 0},
        {"id": 1, "scores": {"marketing": 0.9, "other": 0.1}, "feed_corrections": 0},
        {"id": 2, "scores": tie, "feed_corrections": 2},
        {"id": 3, "scores": tie, "feed_corrections": 0},
        {"id": 4, "scores": tie, "feed_corrections": 0},
    ]
    ranked = rank_for_review(candidates, limit=3)
    assert [row["id"] for row in ranked] == [3, 4, 2]
    everything = rank_for_review(candidates, limit=10)
    assert [row["id"] for row in everything] == [3, 4, 2]  # confident ones are left out
    flagged = [{**candidates[0], "uncertain": True}]
    assert [row["id"] for row in rank_for_review(flagged, limit=10)] == [0]
    assert ranked[0]["priority"] >= ranked[-1]["priority"]
