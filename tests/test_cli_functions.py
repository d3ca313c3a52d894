"""By function everywhere: `search` and `export` filter by effective label, uncertainty and
score and carry the labels; `stats` counts per function, day and feed as the digest does."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from listener.domain import Item
from listener.store import open_store
from tests.polls import apply_poll
from tests.test_cli import invoke, no_starter_feeds
from tests.test_store import make_item, poll


class _Prediction:
    def __init__(self, labels: tuple[str, ...], scores: dict[str, float], uncertain: bool):
        self.labels, self.scores, self.uncertain = labels, scores, uncertain


# Dates derive from the wall clock (moved by `pytest --clock`), since `--since` and `stats`
# read it: the items were first seen half an hour ago.
NOW = datetime.now(UTC)
TITLES = {
    1: "Acme recrute des ingénieurs",  # hr, confident
    2: "Acme change de logo",  # uncertain, best guess marketing
    3: "Acme: communiqué sur la grève",  # model says marketing, a person says communication
    4: "Acme lance une campagne",  # marketing 0.55 + communication 0.50
    5: "Acme, rien à voir",  # not classified yet
}


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path, dict[int, int]]:
    """A database with one feed of five items, each in one labelling situation, a watch
    that mentions them all; returns (db, config, item number -> item id)."""
    db, config = tmp_path / "l.db", no_starter_feeds(tmp_path)
    invoke(db, "init", config=config)
    store = open_store(db)
    store.add_feed("https://rh.example/feed", now=NOW, tags=["hr"], title="RH blog")
    (source,) = store.feed_sources(None)
    items: list[Item] = [
        make_item(
            source.id,
            n,
            title=TITLES[n],
            published_at=NOW - timedelta(hours=n),
            summary=f"Acme résumé {n}",
        )
        for n in TITLES
    ]
    apply_poll(store, poll(source.id, started_at=NOW - timedelta(minutes=30)), items)
    ids = {
        n: store.item_ids_for_keys([item.key])[item.key]
        for n, item in zip(TITLES, items, strict=True)
    }
    store.record_model("v1", {}, NOW - timedelta(days=1))
    store.save_predictions(
        "v1",
        [
            (ids[1], _Prediction(("human_resources",), {"human_resources": 0.91}, False)),
            (ids[2], _Prediction((), {"marketing": 0.31, "other": 0.2}, True)),
            (ids[3], _Prediction(("marketing",), {"marketing": 0.8}, False)),
            (
                ids[4],
                _Prediction(
                    ("marketing", "communication"), {"marketing": 0.55, "communication": 0.5}, False
                ),
            ),
        ],
        NOW,
    )
    store.set_labels(ids[3], ["communication"], by="ana", now=NOW)
    store.close()
    assert invoke(db, "watch", "add", "acme", "acme", "--kind", "brand").exit_code == 0
    return db, config, ids


def _export(db: Path, *args: str) -> list[dict[str, object]]:
    result = invoke(db, "export", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize(
    ("args", "numbers"),
    [
        ((), {1, 2, 3, 4, 5}),
        (("--function", "marketing"), {4}),  # item 3's correction wins over the model
        (("--function", "PR"), {3, 4}),  # short form, any case
        (("--function", "hr", "--function", "communication"), {1, 3, 4}),
        (("--uncertain",), {2}),
        (("--uncertain", "--function", "mkt"), {2}),  # the best guess
        (("--uncertain", "--function", "hr"), set()),
        (("--min-score", "0.9"), {1, 3}),  # a person's label counts 1.0
        (("--function", "communication", "--min-score", "0.52"), {3}),
        (("--function", "marketing", "--min-score", "0.52"), {4}),
    ],
)
def test_export_filters_by_effective_function(
    labelled: tuple[Path, Path, dict[int, int]], args: tuple[str, ...], numbers: set[int]
) -> None:
    db, _, ids = labelled
    assert {row["id"] for row in _export(db, *args)} == {ids[n] for n in numbers}


def test_export_rows_carry_labels_scores_model_and_watches(
    labelled: tuple[Path, Path, dict[int, int]],
) -> None:
    db, _, ids = labelled
    rows = {row["id"]: row for row in _export(db)}
    assert rows[ids[4]]["labels"] == ["marketing", "communication"]
    assert rows[ids[4]]["label_source"] == "model"
    assert rows[ids[4]]["scores"] == {"marketing": 0.55, "communication": 0.5}
    assert rows[ids[4]]["model_version"] == "v1"
    assert rows[ids[4]]["watches"] == ["acme"]
    assert (rows[ids[3]]["labels"], rows[ids[3]]["label_source"]) == (["communication"], "human")
    assert (rows[ids[2]]["labels"], rows[ids[2]]["uncertain"]) == ([], True)
    assert (rows[ids[5]]["model_version"], rows[ids[5]]["uncertain"]) == (None, None)
    table = invoke(db, "export", "--format", "csv", "--function", "mkt").stdout
    (row,) = csv.DictReader(io.StringIO(table))
    assert row["labels"] == "marketing;communication"
    assert row["watches"] == "acme"
    assert json.loads(row["scores"]) == {"communication": 0.5, "marketing": 0.55}


def test_search_text_shows_item_ids_and_labels(
    labelled: tuple[Path, Path, dict[int, int]],
) -> None:
    db, _, ids = labelled
    result = invoke(db, "search", "acme", "--order", "newest")
    assert result.exit_code == 0
    out = result.stdout
    assert f"#{ids[1]}  " in out
    assert "human_resources 0.91" in out
    assert "communication (corrected by hand)" in out
    assert "uncertain (best guess: marketing 0.31)" in out
    assert "marketing 0.55, communication 0.50" in out
    assert "not classified yet" in out
    assert result.stderr.strip().endswith("5 items")
    one = invoke(db, "search", "acme", "--function", "human_resources")
    assert one.stderr.strip().endswith("1 item")
    rows = [
        json.loads(line) for line in invoke(db, "search", "acme", "--json").stdout.split("\n")[:1]
    ]
    assert {"id", "labels", "scores", "model_version", "watches"} <= set(rows[0])


def test_unknown_function_is_a_usage_error_naming_the_choices(
    labelled: tuple[Path, Path, dict[int, int]],
) -> None:
    db, _, _ = labelled
    result = invoke(db, "search", "acme", "--function", "sales")
    assert result.exit_code == 2
    assert "unknown label 'sales'" in result.output
    assert "human_resources" in result.output


def test_stats_counts_per_function_day_and_feed_as_the_digest(
    labelled: tuple[Path, Path, dict[int, int]],
) -> None:
    db, config, _ = labelled
    result = invoke(db, "stats", "--since", "7d", "--json", config=config)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["timezone"] == "Europe/Paris"  # the default recipient's
    assert len(data["days"]) == 7
    seen_on = (NOW - timedelta(minutes=30)).astimezone(ZoneInfo("Europe/Paris")).date()
    day = data["days"][seen_on.isoformat()]
    assert day == {
        "marketing": 1,
        "communication": 2,
        "human_resources": 1,
        "customer_service": 0,
        "business_intelligence": 0,
        "other": 0,
        "(uncertain)": 1,
        "(items)": 5,
    }
    assert data["feeds"] == {"https://rh.example/feed": day}
    text = invoke(db, "stats", config=config).stdout
    assert "items per function, first seen on each local day in Europe/Paris" in text
    assert "RH blog" in text
    assert "hr=human_resources" in text
    assert len([line for line in text.splitlines() if line[:2] == "20"]) == 7  # every day
    # Over a year, the one day with items has a row and the others are counted.
    long = invoke(db, "stats", "--since", "365d", config=config).stdout
    assert [line[:10] for line in long.splitlines() if line[:2] == "20"] == [seen_on.isoformat()]
    assert "(364 days without items not shown)" in long
    assert "total" in long


def test_status_counts_add_up_to_the_new_items(
    labelled: tuple[Path, Path, dict[int, int]],
) -> None:
    # The uncertain item counts in no function: without its own count, five new items read
    # as four function counts that do not say where the fifth went.
    db, config, _ = labelled
    result = invoke(db, "status", "--json", config=config)
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert (items["total"], items["last_24h_new"], items["last_24h_uncertain"]) == (5, 5, 1)
    assert items["last_24h_by_function"]["communication"] == 2  # item 3's correction counts
    assert (items["last_7d_new"], items["last_7d_uncertain"]) == (5, 1)
    text = invoke(db, "status", config=config).stdout
    assert (
        "  last 24 h: 5 new: marketing 1, communication 2, human_resources 1, customer_service 0,"
        " business_intelligence 0, other 0, uncertain 1"
    ) in text
