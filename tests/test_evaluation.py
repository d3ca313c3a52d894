"""The real-item development set: read through listener's parse path, joined by item id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listener.evaluation import DevSetError, read_dev_set
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
