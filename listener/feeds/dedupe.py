"""Pure: stable identities for items, and duplicate removal within one poll.

Keys and hashes are sha256 over an unambiguous encoding (JSON arrays), never Python's
`hash()`, which is salted per process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime

from listener.domain import Item


def item_key(
    feed_id: int,
    guid: str | None,
    url: str | None,
    title: str,
    published_raw: str | None,
    summary: str,
) -> str:
    """Stable per-feed identity: the guid, else the URL, else the title, date and summary.

    The kind is hashed along with the value, so a guid that equals another item's URL
    cannot collide with it, and the feed id is hashed too, because items.key is unique
    across feeds.
    """
    guid = (guid or "").strip()
    url = (url or "").strip()
    if guid:
        parts: list[object] = [feed_id, "guid", guid]
    elif url:
        parts = [feed_id, "url", url]
    else:
        parts = [feed_id, "content", title, published_raw or "", summary]
    return _sha256(parts)


def content_hash(
    title: str,
    summary: str,
    url: str | None,
    author: str | None,
    published_at: datetime | None,
) -> str:
    """Changes when anything a reader sees changes, so an edited item is noticed."""
    published = published_at.isoformat() if published_at else None
    return _sha256([title, summary, url, author, published])


def drop_duplicates(items: Iterable[Item]) -> list[Item]:
    """The first item of each key, in the original order."""
    seen: set[str] = set()
    kept: list[Item] = []
    for item in items:
        if item.key not in seen:
            seen.add(item.key)
            kept.append(item)
    return kept


def _sha256(parts: list[object]) -> str:
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()
