"""A poll's classification in the parse workers, and its fallback to the poller."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from listener.classify.decision import Prediction, item_text
from listener.classify.deferred import ModelFiles
from listener.classify.linear import load_runtime_classifier
from listener.classify.training import save_classifier
from listener.config import parse_settings
from listener.jobs.poll import poll_feeds
from listener.jobs.services import Services
from listener.store import open_store
from tests.classifier_data import tiny_model
from tests.conftest import NOW
from tests.polls import TOPICS, many_items
from tests.test_poll_job import FakeFetcher

SHIPPED_MODEL = Path(__file__).parent.parent / "models" / "classifier.skops"


class Recording:
    """The shipped model, recording how many texts each predict call on this side got."""

    def __init__(self) -> None:
        loaded = load_runtime_classifier(SHIPPED_MODEL)
        assert loaded is not None
        self.model = loaded
        self.calls: list[int] = []
        self.version, self.labels, self.files = loaded.version, loaded.labels, loaded.files

    def predict(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        self.calls.append(len(texts))
        return self.model.predict(texts, explain=explain)


def stored_scores(store: Any) -> list[tuple[str, dict[str, float]]]:
    """(title, scores) of every stored item, in title order."""
    rows = store.db.execute(
        "SELECT items.title, predictions.scores FROM items JOIN predictions"
        " ON predictions.item_id = items.id ORDER BY items.title, items.id"
    ).fetchall()
    return [(title, json.loads(scores)) for title, scores in rows]


def poll_many(tmp_path: Path, classifier: Any) -> Any:
    settings = parse_settings({"poll": {"parse_workers": 2}}, {})
    store = open_store(tmp_path / "l.db")
    for name in "ab":
        store.add_feed(f"https://{name}.example/feed", now=NOW)
    services = Services(settings, store, FakeFetcher({}), parse=many_items, classifier=classifier)
    poll_feeds(services, NOW, all_feeds=True)
    return store


def test_a_poll_with_many_new_items_classifies_them_in_the_workers(tmp_path: Path) -> None:
    classifier = Recording()
    store = poll_many(tmp_path, classifier)
    assert all(n < 200 for n in classifier.calls), classifier.calls  # not here
    stored = stored_scores(store)
    assert len(stored) == 300
    languages = dict(store.db.execute("SELECT lang, count(*) FROM items GROUP BY lang").fetchall())
    assert languages == {"en": 240, "fr": 60}
    texts = [item_text(title, dict(TOPICS)[title.rsplit(" #", 1)[0]]) for title, _ in stored]
    assert [scores for _, scores in stored] == [p.scores for p in classifier.model.predict(texts)]


def test_classification_falls_back_to_the_poller_when_the_workers_cannot(
    tmp_path: Path,
) -> None:
    classifier = Recording()
    # The workers would load another model than the poller's: they refuse, the poller scores.
    other = tmp_path / "other" / "classifier.skops"
    save_classifier(*tiny_model(), other)
    classifier.files = ModelFiles(other)
    with capture_logs() as logs:
        store = poll_many(tmp_path, classifier)
    assert any(e["event"] == "classify_in_workers_failed" for e in logs)
    assert sum(classifier.calls) == 300
    assert len(stored_scores(store)) == 300
    assert store.db.execute("SELECT count(*) FROM items WHERE lang IS NULL").fetchone()[0] == 0
