"""Pure: stable identities for items, and duplicate removal within one poll.

Keys and hashes are sha256 over an unambiguous encoding (JSON arrays), never Python's
`hash()`, which is salted per process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

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


def key_aliases(item: Item) -> tuple[str, ...]:
    """Pure: the keys `item` was stored under if its publisher has since changed the form of
    its identifier but not the identifier: http and https, with or without "www." (a site
    moved to https rewrites every guid), or a guid added to a feed that had none (keyed by
    its URL before). A poll that finds one of them stored renames that item instead of
    storing a second copy (Feedbin's alternate id does the same for the scheme and host).
    Never the key itself; empty for items keyed by content."""
    guid = (item.guid or "").strip()
    url = (item.url or "").strip()
    if guid:
        kind, value = "guid", guid
    elif url:
        kind, value = "url", url
    else:
        return ()
    aliases = [_sha256([item.feed_id, kind, other]) for other in _url_forms(value)]
    if guid and url:
        aliases += [_sha256([item.feed_id, "url", form]) for form in (url, *_url_forms(url))]
    return tuple(dict.fromkeys(alias for alias in aliases if alias != item.key))


def _url_forms(value: str) -> list[str]:
    """The other spellings of an http(s) URL: the other scheme, with and without "www."
    (the port, path, query and fragment as they were); none for anything else."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return []
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return []
    netloc = parts.netloc
    if netloc.lower().startswith("www."):
        hosts = [netloc, netloc[4:]]
    elif "@" in netloc or "." not in netloc:
        hosts = [netloc]  # userinfo or a single-label host: leave the host alone
    else:
        hosts = [netloc, "www." + netloc]
    forms = [
        urlunsplit((scheme, host, parts.path, parts.query, parts.fragment))
        for scheme in ("http", "https")
        for host in hosts
    ]
    return [form for form in forms if form != value]


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
