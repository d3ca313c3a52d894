"""parse_feed: golden files for every odd feed we know of, plus properties on arbitrary bytes.

Each tests/data/feeds/<name> has a <name>.expected.json: the ParsedFeed as JSON, or the
ParseError message. After a deliberate change, regenerate them with
`LISTENER_UPDATE_GOLDEN=1 pytest tests/test_parse.py` and review the diff line by line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import feedparser.api
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener.domain import Fetched, ParsedFeed
from listener.errors import ParseError
from listener.feeds.language import with_languages
from listener.feeds.parse import parse_feed

FEEDS = Path(__file__).parent / "data" / "feeds"
FIXTURES = sorted(path.name for path in FEEDS.iterdir() if not path.name.endswith(".expected.json"))
UPDATE_GOLDEN = os.environ.get("LISTENER_UPDATE_GOLDEN") == "1"

# Response headers for the fixtures that need them; the others are served without any.
HEADERS: dict[str, dict[str, str]] = {
    "jsonfeed11.json": {"content-type": "application/feed+json"},
    "rss20.xml": {"content-type": "application/rss+xml; charset=utf-8"},
    "utf8_labelled_latin1.xml": {"content-type": "text/xml; charset=ISO-8859-1"},
    "relative_site_link.xml": {"content-location": "https://cdn.example.net/feeds/moved.xml"},
    "html_page.html": {"content-type": "text/html; charset=utf-8"},
    "cp1251_under_latin1_header.xml": {"content-type": "text/html; charset=iso-8859-1"},
}


def fetched(name: str, body: bytes | None = None, **headers: str) -> Fetched:
    return Fetched(
        url=f"https://feeds.example.com/{name}",
        status=200,
        body=(FEEDS / name).read_bytes() if body is None else body,
        headers=headers or HEADERS.get(name, {}),
    )


def as_json(parsed: ParsedFeed) -> dict[str, Any]:
    def item(value: Any) -> dict[str, Any]:
        fields = dataclasses.asdict(value)
        if fields["published_at"] is not None:
            fields["published_at"] = fields["published_at"].isoformat()
        return fields

    return {
        "title": parsed.title,
        "site_url": parsed.site_url,
        "warning": parsed.warning,
        "skipped": parsed.skipped,
        "updated_at": parsed.updated_at.isoformat() if parsed.updated_at else None,
        "items": [item(value) for value in parsed.items],
    }


def outcome(name: str) -> dict[str, Any]:
    """The parse, with the language a poll then detects on the items it writes."""
    try:
        parsed = parse_feed(1, fetched(name))
        return as_json(dataclasses.replace(parsed, items=with_languages(parsed.items)))
    except ParseError as exc:
        return {"error": exc.message}


@pytest.mark.parametrize("name", FIXTURES)
def test_parse_feed_matches_golden_file(name: str) -> None:
    golden = FEEDS / f"{name}.expected.json"
    actual = outcome(name)
    if UPDATE_GOLDEN:
        golden.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert actual == json.loads(golden.read_text())


def test_every_fixture_has_a_golden_file() -> None:
    goldens = {path.name.removesuffix(".expected.json") for path in FEEDS.glob("*.expected.json")}
    assert goldens == set(FIXTURES)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.xml", "empty body"),
        ("html_page.html", "not a feed (HTML page)"),
        ("not_xml.txt", "not a feed: "),
        ("bozo_no_items.xml", "broken feed with no items: "),
    ],
)
def test_parse_feed_rejects_what_is_not_a_feed(name: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(1, fetched(name))
    assert info.value.message.startswith(message)
    assert info.value.url == f"https://feeds.example.com/{name}"


def test_parse_feed_keeps_an_empty_channel() -> None:
    parsed = parse_feed(1, fetched("empty_channel.xml"))
    assert (parsed.title, parsed.items, parsed.warning) == ("Nothing yet", (), None)


def test_parse_feed_warns_but_keeps_items_of_a_broken_feed() -> None:
    parsed = parse_feed(1, fetched("bozo_with_items.xml"))
    assert len(parsed.items) == 2
    assert parsed.warning is not None
    assert parsed.warning.startswith("SAXParseException: ")


def test_parse_feed_counts_skipped_entries() -> None:
    parsed = parse_feed(1, fetched("missing_fields.xml"))
    assert parsed.skipped == 1
    assert [item.title for item in parsed.items][:1] == [
        "No title here, so the first words of this description become the title of the…"
    ]


def test_parse_feed_reads_the_same_feed_in_any_encoding() -> None:
    text = (FEEDS / "utf16le_nobom.xml").read_bytes().decode("utf-16-le")
    expected = parse_feed(1, fetched("x", text.encode("utf-16-le")))
    for body in (
        text.encode("utf-16"),  # with a BOM
        text.encode("utf-16-be"),
        b"\xef\xbb\xbf\n " + text.replace("utf-16", "utf-8").encode(),  # BOM, then whitespace
        text.replace("utf-16", "utf-8").encode(),
    ):
        assert parse_feed(1, fetched("x", body)).items == expected.items


def test_parse_feed_prefers_the_header_charset() -> None:
    body = (FEEDS / "latin1_declared_utf8.xml").read_bytes()
    parsed = parse_feed(1, fetched("x", body, **{"content-type": "text/xml; charset=iso-8859-1"}))
    assert parsed.warning is None  # the header was right, so nothing was overridden
    assert parsed.items[0].title == "Réouverture du café après travaux"


def test_parse_feed_refuses_a_gzip_bomb() -> None:
    bomb = gzip.compress(b"<rss>" + b" " * (17 * 1024 * 1024))
    with pytest.raises(ParseError, match="inflates to more than"):
        parse_feed(1, fetched("bomb.xml.gz", bomb))


def test_parse_feed_rejects_json_that_is_not_a_feed() -> None:
    body = b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}'
    with pytest.raises(ParseError, match="JSON without an items list"):
        parse_feed(1, fetched("x.json", body))
    with pytest.raises(ParseError, match="invalid JSON"):
        parse_feed(1, fetched("x.json", b"{" * 100_000, **{"content-type": "application/json"}))


def test_parse_feed_keys_stay_stable_when_the_feed_moves() -> None:
    # Content-Location/URL must not leak into guids ("brand-3" is a permalink guid).
    here = parse_feed(1, fetched("relative_channel_link.xml"))
    body = (FEEDS / "relative_channel_link.xml").read_bytes()
    moved = parse_feed(
        1, Fetched(url="https://other.example/rss", status=200, body=body, headers={})
    )
    assert [item.key for item in moved.items] == [item.key for item in here.items]
    assert here.items[2].guid == "brand-3"


def test_parse_feed_output_does_not_depend_on_expat_buffering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffered = [outcome(name) for name in FIXTURES]
    plain = [
        name for name in feedparser.api.PREFERRED_XML_PARSERS if name != "listener.feeds.parse"
    ]
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", plain)
    assert [outcome(name) for name in FIXTURES] == buffered


def test_parse_feed_runs_in_a_process_pool() -> None:
    # The poller parses on both cores; forkserver pickles the function and the Fetched.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        parsed = pool.submit(parse_feed, 1, fetched("rss20.xml")).result(timeout=60)
    assert parsed == parse_feed(1, fetched("rss20.xml"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_parse_feed_raises_only_parse_error(body: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_feed(1, fetched("fuzz", body))


FEED_BYTES = [(FEEDS / name).read_bytes() for name in FIXTURES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(FEED_BYTES),
    st.integers(min_value=0, max_value=4000),
    st.binary(max_size=64),
    st.sampled_from(["", "application/json", "text/html", "text/xml; charset=utf-16"]),
)
def test_parse_feed_raises_only_parse_error_on_damaged_feeds(
    body: bytes, at: int, junk: bytes, content_type: str
) -> None:
    damaged = body[:at] + junk + body[at + len(junk) :]
    headers = {"content-type": content_type} if content_type else {}
    with contextlib.suppress(ParseError):
        parsed = parse_feed(1, fetched("fuzz", damaged, **headers))
        for item in parsed.items:
            assert item.url is None or item.url.startswith(("http://", "https://"))
            assert item.title or item.summary or item.guid or item.url


def _rss_with_dtd(subset: str, title: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE rss [{subset}]><rss version="2.0"><channel>'
        f"<title>t</title><item><title>{title}</title><link>https://x.example/1</link></item>"
        "</channel></rss>"
    ).encode()


def test_quadratic_entity_expansion_is_refused_before_parsing() -> None:
    # 220 KB on the wire, 4 GB once expanded: refused by counting, in milliseconds.
    body = _rss_with_dtd(f'<!ENTITY a "{"x" * 100_000}">', "&a;" * 40_000)
    with pytest.raises(ParseError, match="entities expand to more than 16 MB"):
        parse_feed(1, fetched("bomb.xml", body))


def test_nested_entities_count_as_what_they_expand_to() -> None:
    subset = f'<!ENTITY a "{"x" * 10_000}"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    with pytest.raises(ParseError, match="entities expand"):
        parse_feed(1, fetched("nested.xml", _rss_with_dtd(subset, "&b;" * 200)))


def test_small_entity_declarations_still_parse() -> None:
    parsed = parse_feed(
        1, fetched("nbsp.xml", _rss_with_dtd('<!ENTITY nbsp "&#160;">', "a&nbsp;b"))
    )
    assert [item.title for item in parsed.items] == ["a b"]


def test_a_utf16_bom_before_utf8_bytes_is_ignored() -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>Été à Lyon</title><link>https://x.example/1</link></item></channel></rss>"
    ).encode()
    parsed = parse_feed(1, fetched("bom.xml", b"\xff\xfe" + body))
    assert [item.title for item in parsed.items] == ["Été à Lyon"]
