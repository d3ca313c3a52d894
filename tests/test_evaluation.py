"""The real-item development set: read through listener's parse path, joined by item id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listener.classify.evaluation import (
    DevItem,
    DevSetError,
    macro_f1,
    read_dev_set,
    split_by_feed,
    split_within_feeds,
)
from listener.classify.training import LabelledRow
from tests.test_poll import rss

FEED = rss(
    "Acme newsroom",
    ("Acme <b>hires</b> 200 engineers", "https://acme.example/a1", "a1", "Recruiting &amp; pay."),
    ("Acme Q3 results", "https://acme.example/a2", "a2", "Revenue up 12%."),
)
POST = {"slug": "onboarding", "title": "L'intégration", "description": "Accueillir.", "x": 1}


def write_set(tmp_path: Path, records: list[dict[str, object]]) -> Path:
    feeds = tmp_path / "realfeeds" / "feeds"
    feeds.mkdir(parents=True)
    (feeds / "acme.rss.xml").write_bytes(FEED)
    (tmp_path / "realfeeds" / "posts").mkdir()
    (tmp_path / "realfeeds" / "posts" / "p.jsonl").write_text(json.dumps(POST) + "\n")
    labels = tmp_path / "eval-dev" / "dev_labels.jsonl"
    labels.parent.mkdir()
    labels.write_text("".join(json.dumps(record) + "\n" for record in records))
    return labels


def test_read_dev_set_joins_items_by_id_with_the_text_the_poller_stores(tmp_path: Path) -> None:
    labels = write_set(
        tmp_path,
        [
            {"feed_file": "acme.rss.xml", "item_id": "a1", "labels": ["human_resources"]},
            {"feed_file": "acme.rss.xml", "item_id": "a2", "labels": ["business_intelligence"]},
            {
                "feed_file": "../posts/p.jsonl",
                "item_id": "onboarding",
                "labels": ["human_resources"],
                "lang": "fr",
            },
        ],
    )
    items = read_dev_set(labels)
    assert [item.feed for item in items] == ["acme.rss.xml", "acme.rss.xml", "../posts/p.jsonl"]
    first = items[0].row
    assert (first.title, first.summary) == ("Acme hires 200 engineers", "Recruiting & pay.")
    assert items[1].row.labels == ("business_intelligence",)
    assert (items[2].row.lang, items[2].row.title) == ("fr", "L'intégration")


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"feed_file": "acme.rss.xml", "item_id": "zz", "labels": ["other"]}, "not found"),
        ({"feed_file": "acme.rss.xml", "item_id": "a1", "labels": ["sales"]}, "bad labels"),
        ({"feed_file": "gone.xml", "item_id": "a1", "labels": ["other"]}, "cannot read"),
        ({"item_id": "a1", "labels": ["other"]}, "missing field"),
    ],
)
def test_read_dev_set_names_each_bad_line(
    tmp_path: Path, record: dict[str, object], problem: str
) -> None:
    labels = write_set(tmp_path, [record])
    with pytest.raises(DevSetError, match=rf"dev_labels.jsonl:1: .*{problem}"):
        read_dev_set(labels)


def dev_items(counts: dict[str, int]) -> list[DevItem]:
    return [
        DevItem(feed, LabelledRow(f"{feed}-{n}", "en", ("other",), f"t{n}", ""))
        for feed, count in counts.items()
        for n in range(count)
    ]


@pytest.mark.parametrize("corrections", [1, 5, 9])
def test_split_by_feed_never_measures_on_a_corrected_feed(corrections: int) -> None:
    items = dev_items({"a": 3, "b": 4, "c": 2, "d": 5})
    split = split_by_feed(items, corrections, seed=7)
    assert split is not None
    assert len(split.corrections) == corrections
    corrected_feeds = {item.feed for item in split.corrections}
    assert corrected_feeds.isdisjoint(item.feed for item in split.evaluation)
    assert split_by_feed(items, corrections, seed=7) == split  # seeded, not random


@pytest.mark.parametrize("corrections", [1, 3, 6])
def test_split_within_feeds_measures_the_corrected_feeds_other_items(corrections: int) -> None:
    items = dev_items({"a": 3, "b": 4, "c": 1, "d": 6})
    split = split_within_feeds(items, corrections, seed=3)
    assert split is not None
    assert len(split.corrections) == corrections
    assert {item.feed for item in split.evaluation} == {item.feed for item in split.corrections}
    assert set(split.corrections).isdisjoint(split.evaluation)
    for feed in {item.feed for item in split.corrections}:  # at most half of a feed is corrected
        corrected = [item for item in split.corrections if item.feed == feed]
        assert len(corrected) <= sum(item.feed == feed for item in items) // 2
    assert split_within_feeds(items, corrections, seed=3) == split


def test_split_within_feeds_is_none_when_the_feeds_run_out() -> None:
    assert split_within_feeds(dev_items({"a": 3, "b": 4, "c": 1}), 4, seed=1) is None


def test_split_by_feed_is_none_when_no_feed_is_left() -> None:
    assert split_by_feed(dev_items({"a": 3, "b": 4}), 6, seed=1) is None


def test_macro_f1_averages_only_the_labels_present() -> None:
    truth = [("marketing",), ("other",), ("marketing", "communication")]
    assert macro_f1(truth, truth) == 1.0
    predicted = [("marketing",), ("marketing",), ("communication",)]
    # marketing: 1 hit, 2 guessed, 2 true -> 0.5; other 0; communication 1.0
    assert macro_f1(truth, predicted) == pytest.approx((0.5 + 0.0 + 1.0) / 3)
