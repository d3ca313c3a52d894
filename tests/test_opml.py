from __future__ import annotations

from pathlib import Path

import pytest

from listener.errors import OpmlError
from listener.feeds.opml import OpmlFeed, parse_opml, render_opml
from tests.conftest import NOW

NESTED = b"""<?xml version="1.0"?>
<opml version="1.0"><head><title>x</title></head><body>
  <outline text="Competitors">
    <outline text="FR">
      <outline type="rss" text="Acme blog" xmlUrl="https://acme.example/feed"
               category="/PR/retail"/>
    </outline>
    <outline type="rss" title="Globex" text="g" xmlUrl="https://globex.example/rss"/>
  </outline>
  <outline type="rss" text="Dup" xmlUrl="https://acme.example/feed"/>
  <outline type="rss" text="Gopher" xmlUrl="gopher://old.example/feed"/>
</body></opml>"""


def test_parse_opml_turns_folders_and_categories_into_tags() -> None:
    feeds, problems = parse_opml(NESTED)
    assert feeds == [
        OpmlFeed("https://acme.example/feed", "Acme blog", ("competitors", "fr", "pr", "retail")),
        OpmlFeed("https://globex.example/rss", "Globex", ("competitors",)),
    ]
    assert problems == ["outline 'Gopher': not an http(s) URL: 'gopher://old.example/feed'"]


def test_render_then_parse_round_trips() -> None:
    feeds, _ = parse_opml(NESTED)
    again, problems = parse_opml(render_opml(feeds, now=NOW).encode())
    assert again == feeds
    assert problems == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<html><body/></html>", "not <opml>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
        (b"<opml", "not well-formed"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><opml/>', "DOCTYPE"),
    ],
)
def test_parse_opml_rejects_what_it_cannot_read(data: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=message):
        parse_opml(data)


def test_shipped_starter_list_is_valid_and_tagged() -> None:
    path = Path(__file__).parent.parent / "config" / "feeds.opml"
    feeds, problems = parse_opml(path.read_bytes())
    assert problems == []
    assert len(feeds) >= 20
    kinds = {"marketing", "communication", "human_resources", "customer_service"}
    assert kinds <= {tag for feed in feeds for tag in feed.tags}
    assert {"en", "fr"} <= {tag for feed in feeds for tag in feed.tags}
