"""item_key, content_hash and drop_duplicates."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from listener.domain import Item
from listener.feeds.dedupe import content_hash, drop_duplicates, item_key, key_aliases

WHEN = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def make_item(key: str, title: str = "t") -> Item:
    return Item(
        feed_id=1,
        key=key,
        guid=None,
        url=None,
        title=title,
        summary="",
        author=None,
        published_at=None,
        published_raw=None,
        lang=None,
        content_hash="h",
    )


def test_item_key_is_a_stable_sha256() -> None:
    # Keys are stored: changing how they are computed makes every stored item look new.
    key = item_key(1, "acme-1", None, "t", None, "s")
    assert key == "a88889305cbc93ec0cd8a69622c37b37aaa300aa4ed39e6b877015c521243816"
    assert key == hashlib.sha256(b'[1,"guid","acme-1"]').hexdigest()


def test_item_key_prefers_guid_then_url_then_content() -> None:
    by_guid = item_key(1, "g", "https://a.example/1", "t", "d", "s")
    assert by_guid == item_key(1, " g\n", "https://other.example/", "other", None, "")
    by_url = item_key(1, None, "https://a.example/1", "t", "d", "s")
    assert by_url == item_key(1, "  ", " https://a.example/1 ", "other", None, "")
    by_content = item_key(1, None, None, "t", "d", "s")
    assert len({by_guid, by_url, by_content}) == 3
    assert by_content != item_key(1, None, None, "t", "d", "s2")
    assert by_content != item_key(1, None, None, "t", None, "s")


def test_item_key_kinds_cannot_collide() -> None:
    url = "https://a.example/1"
    assert item_key(1, url, None, "t", None, "") != item_key(1, None, url, "t", None, "")


def test_item_key_content_fields_cannot_run_together() -> None:
    assert item_key(1, None, None, "ab", None, "c") != item_key(1, None, None, "a", None, "bc")


def test_item_key_depends_on_the_feed() -> None:
    assert item_key(1, "g", None, "t", None, "") != item_key(2, "g", None, "t", None, "")


def test_content_hash_changes_with_any_visible_field() -> None:
    base = ("title", "summary", "https://a.example/1", "Jo", WHEN)
    variants = [
        ("title!", "summary", "https://a.example/1", "Jo", WHEN),
        ("title", "summary!", "https://a.example/1", "Jo", WHEN),
        ("title", "summary", "https://a.example/2", "Jo", WHEN),
        ("title", "summary", "https://a.example/1", None, WHEN),
        ("title", "summary", "https://a.example/1", "Jo", None),
        ("title", "summary", "https://a.example/1", "Jo", WHEN.replace(hour=10)),
    ]
    hashes = {content_hash(*fields) for fields in [base, *variants]}
    assert len(hashes) == 1 + len(variants)
    assert content_hash(*base) == content_hash(*base)


def test_drop_duplicates_keeps_the_first_of_each_key_in_order() -> None:
    items = [make_item("a", "first a"), make_item("b"), make_item("a", "second a"), make_item("c")]
    assert drop_duplicates(items) == [items[0], items[1], items[3]]


ITEM = st.builds(
    Item,
    feed_id=st.integers(1, 3),
    key=st.sampled_from("abcdef"),
    guid=st.none() | st.text(max_size=5),
    url=st.none(),
    title=st.text(max_size=5),
    summary=st.text(max_size=5),
    author=st.none(),
    published_at=st.none(),
    published_raw=st.none(),
    lang=st.none(),
    content_hash=st.text(max_size=5),
)


@given(st.lists(ITEM))
def test_drop_duplicates_is_idempotent_and_unique(items: list[Item]) -> None:
    once = drop_duplicates(items)
    assert drop_duplicates(once) == once
    assert len({item.key for item in once}) == len(once)
    assert {item.key for item in once} == {item.key for item in items}
    positions = [items.index(item) for item in once]  # a subsequence, in order
    assert positions == sorted(positions)


@given(
    st.integers(),
    st.none() | st.text(),
    st.none() | st.text(),
    st.text(),
    st.none() | st.text(),
    st.text(),
)
def test_item_key_is_a_hex_sha256_of_its_inputs(
    feed_id: int, guid: str | None, url: str | None, title: str, raw: str | None, summary: str
) -> None:
    key = item_key(feed_id, guid, url, title, raw, summary)
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert key == item_key(feed_id, guid, url, title, raw, summary)


def keyed(guid: str | None, url: str | None) -> Item:
    key = item_key(1, guid, url, "t", None, "")
    return Item(1, key, guid, url, "t", "", None, None, None, None, "h")


def test_key_aliases_are_the_other_spellings_of_the_identifier() -> None:
    aliases = set(key_aliases(keyed("http://acme.example/?p=1", None)))
    assert aliases == {
        item_key(1, other, None, "t", None, "")
        for other in (
            "https://acme.example/?p=1",
            "http://www.acme.example/?p=1",
            "https://www.acme.example/?p=1",
        )
    }
    # A URL-keyed item: the same forms of its URL.
    aliases = set(key_aliases(keyed(None, "https://www.acme.example/a")))
    assert item_key(1, None, "http://acme.example/a", "t", None, "") in aliases
    assert len(aliases) == 3
    # A guid that is no URL has no other spelling, but the item may have been stored by its
    # link before the feed gave it a guid.
    assert key_aliases(keyed("tag:acme.example,2026:1", "https://acme.example/a")) == (
        item_key(1, None, "https://acme.example/a", "t", None, ""),
        item_key(1, None, "http://acme.example/a", "t", None, ""),
        item_key(1, None, "http://www.acme.example/a", "t", None, ""),
        item_key(1, None, "https://www.acme.example/a", "t", None, ""),
    )
    # Content-keyed items and non-http identifiers have none.
    assert key_aliases(keyed(None, None)) == ()
    assert key_aliases(keyed("urn:uuid:1", None)) == ()
    assert key_aliases(keyed(None, "ftp://acme.example/a")) == ()


@given(st.text(max_size=40), st.text(max_size=40))
def test_key_aliases_never_hold_the_key_itself(guid: str, url: str) -> None:
    item = keyed(guid or None, url or None)
    assert item.key not in key_aliases(item)
