"""Pure: a fetched body becomes a ParsedFeed of normalised Items.

RSS 0.9x/1.0/2.0 and Atom go through feedparser, which only ever sees bytes in a BytesIO;
JSON Feed is read with `json`. feedparser's dicts never leave this module. Module-level
functions only, so `parse_feed` can run in a process pool.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import time
import unicodedata
import xml.sax.expatreader
import zlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import feedparser.api

from listener.domain import Fetched, Item, ParsedFeed
from listener.errors import ParseError
from listener.feeds.dedupe import content_hash, item_key
from listener.feeds.text import clean_text, truncate

MAX_SUMMARY_CHARS = 5_000  # we store plain text for classification, not whole articles
# A feed may put megabytes in any field (a 5 MB title was seen): store what a person reads.
MAX_TITLE_CHARS = 1_000
MAX_AUTHOR_CHARS = 200
MAX_ID_CHARS = 2_048  # a guid, kept as the key's input
MAX_URL_CHARS = 4_096  # a longer link is not one anybody follows: dropped, not cut
_TITLE_FROM_SUMMARY_CHARS = 80
_MAX_WARNING_CHARS = 200
_MAX_GUNZIP_BYTES = 16 * 1024 * 1024  # a little over the fetcher's default body cap

_HTML_PAGE = re.compile(
    rb"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S
)
_ROOT_ELEMENT = re.compile(rb"<(?:rss|feed|rdf:RDF)\b")
_LOCAL_DATE = re.compile(
    r"\s*(?:[^\W\d_]+\.?,?\s+)?(\d{1,2})\.?\s+([^\W\d_]+)\.?,?\s+(\d{4}),?\s+"
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4}|[A-Za-z]{1,5})?\s*$"
)
# First four, else first three letters of a month name, accents removed ("juin"/"juil").
_MONTHS = {"juin": 6, "juil": 7, "jan": 1, "ene": 1, "gen": 1, "fev": 2, "feb": 2, "mar": 3}
_MONTHS |= {"mrz": 3, "apr": 4, "abr": 4, "avr": 4, "may": 5, "mai": 5, "mag": 5, "jun": 6}
_MONTHS |= {"giu": 6, "jul": 7, "lug": 7, "aug": 8, "ago": 8, "aou": 8, "sep": 9, "set": 9}
_MONTHS |= {"oct": 10, "okt": 10, "ott": 10, "out": 10, "nov": 11, "dec": 12, "dez": 12}
_MONTHS |= {"dic": 12}
_ZONES = {"GMT": 0, "UT": 0, "UTC": 0, "Z": 0, "CET": 60, "CEST": 120, "MEZ": 60, "MESZ": 120}
_ZONES |= {"BST": 60, "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "PST": -480}
_ZONES |= {"PDT": -420}
_EMAIL_AND_NAME = re.compile(r"[^\s@()]+@[^\s@()]+ ?\((.+)\)$")
_NAME_AND_EMAIL = re.compile(r"(.+?) ?\([^\s@()]+@[^\s@()]+\)$")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_XML_ENCODING = re.compile(rb"^<\?xml[^>]*encoding\s*=\s*[\"']([\w.:-]+)", re.I)
# Labels servers and templates put on anything by default (Apache's AddDefaultCharset...).
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "us-ascii", "ascii"}
_LATIN1_LABELS |= {"windows-1252", "cp1252", "iso-8859-15"}


def parse_feed(feed_id: int, fetched: Fetched) -> ParsedFeed:
    """Parse an RSS, Atom, RDF or JSON Feed body; ParseError if it is not a usable feed."""
    url = fetched.url
    body, charset = _prepare_body(url, fetched.body, _header_charset(fetched.headers))
    if not body.strip():
        raise ParseError(url, "empty body")
    base = _resolve(url, fetched.headers.get("content-location", "")) or url
    if _is_json_feed(body, fetched.headers.get("content-type", "")):
        return _parse_json_feed(feed_id, url, base, body)
    is_html = bool(_HTML_PAGE.match(body[:2048]))
    if is_html and not _ROOT_ELEMENT.search(body):  # (some sites wrap a feed in XHTML)
        raise ParseError(url, "not a feed (HTML page)")
    return _parse_xml_feed(feed_id, url, base, body, charset, is_html=is_html)


# --- bytes before parsing ------------------------------------------------------------------


def _header_charset(headers: Mapping[str, str]) -> str | None:
    match = _CHARSET.search(headers.get("content-type", ""))
    return match.group(1).lower() if match else None


def _prepare_body(url: str, body: bytes, charset: str | None) -> tuple[bytes, str | None]:
    """Undo what breaks feedparser: gzip, UTF-16/32, a BOM, junk before the XML declaration.

    Returns the body and the charset to announce to feedparser ("utf-8" once we transcoded).
    """
    if body[:2] == b"\x1f\x8b":
        # A .xml.gz served without Content-Encoding reaches us still compressed.
        body = _gunzip(url, body)
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            rest = body[len(bom) :]
            if encoding.startswith("utf-16") and not _looks_utf16(rest):
                # A UTF-16 BOM pasted before UTF-8 text (seen in the wild): the bytes win.
                body = rest
                break
            body, charset = _to_utf8(rest, encoding), "utf-8"
            break
    else:
        utf16 = _sniff_utf16(body)
        if utf16:
            body, charset = _to_utf8(body, utf16), "utf-8"
    # The XML declaration must be the very first thing: expat rejects even a newline before
    # it, and feedparser's fallback parser then often loses every item.
    body = body.lstrip()
    start = body.find(b"<?xml", 0, 1024)
    if start > 0 and not _ROOT_ELEMENT.search(body, 0, start):
        body = body[start:]  # junk before the declaration, e.g. a PHP warning
    match = _XML_ENCODING.match(body)
    declared = match.group(1).decode("ascii").lower() if match else None
    if charset in _LATIN1_LABELS and declared and declared not in _LATIN1_LABELS:
        # A server's default charset loses to what the author declared, if that fits.
        charset = declared if _decodes(body, declared) else charset
    if (charset or declared) in _LATIN1_LABELS and not body.isascii() and _decodes(body, "utf-8"):
        # Latin-1 text is practically never valid UTF-8, so the label is the mistake.
        charset = "utf-8"
    return body, charset


def _gunzip(url: str, body: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = inflater.decompress(body, _MAX_GUNZIP_BYTES)
    except zlib.error as exc:
        raise ParseError(url, f"not a feed: corrupt gzip body ({exc})") from exc
    if inflater.unconsumed_tail:
        raise ParseError(url, f"gzip body inflates to more than {_MAX_GUNZIP_BYTES} bytes")
    return data


def _sniff_utf16(body: bytes) -> str | None:
    """UTF-16 without a BOM: markup is ASCII, so every other byte of the head is NUL."""
    head = body[:256]
    if len(head) < 8:
        return None
    even_nuls, odd_nuls = head[0::2].count(0), head[1::2].count(0)
    half = len(head) // 2
    if odd_nuls > 0.9 * half and even_nuls == 0:
        return "utf-16-le"
    if even_nuls > 0.9 * half and odd_nuls == 0:
        return "utf-16-be"
    return None


def _to_utf8(body: bytes, encoding: str) -> bytes:
    return body.decode(encoding, "replace").encode("utf-8")


def _decodes(body: bytes, encoding: str) -> bool:
    try:
        body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


# --- RSS, Atom, RDF via feedparser ---------------------------------------------------------


class _BufferedExpatParser(xml.sax.expatreader.ExpatParser):
    """Expat that reports each text node in one piece instead of one piece per entity.

    Escaped HTML ("&lt;p&gt;") otherwise costs feedparser one Python callback per entity;
    buffering parses such feeds 1.8x faster (1.1x over the realfeeds corpus), with the
    same output (tests/test_parse.py checks it).
    """

    def reset(self) -> None:
        super().reset()
        parser = self._parser  # type: ignore[attr-defined]  # private in typeshed
        parser.buffer_text = True
        parser.buffer_size = 1 << 16


def create_parser() -> xml.sax.xmlreader.XMLReader:
    """The xml.sax driver hook (`make_parser` imports this module and calls this)."""
    return _BufferedExpatParser()


# feedparser asks xml.sax.make_parser for these drivers first; ours is plain expat, buffered.
if __name__ not in feedparser.api.PREFERRED_XML_PARSERS:
    feedparser.api.PREFERRED_XML_PARSERS.insert(0, __name__)


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 markup has a NUL beside each ASCII character ("<\\0?\\0x\\0"); UTF-8 has none."""
    head = data.lstrip(b" \t\r\n")[:64]
    return len(head) >= 2 and head.count(0) * 3 >= len(head)


# An internal DTD may declare entities; a feed that declares one 100 KB long and refers to it
# thousands of times expands, inside expat, to gigabytes (a quadratic blowup that stays under
# expat's billion-laughs limits). Count the expansion before parsing and refuse it above this.
MAX_ENTITY_EXPANSION_BYTES = 16 * 1024 * 1024
_DOCTYPE_SUBSET = re.compile(rb"<!DOCTYPE[^\[>]*\[(.*?)\]\s*>", re.S)
_ENTITY_REF = re.compile(rb"&([\w.:-]+);")
_ENTITY_DECL = re.compile(rb"<!ENTITY\s+(?!%)([\w.:-]+)\s+(\"[^\"]*\"|'[^']*')", re.S)


def _check_entity_expansion(url: str, body: bytes) -> None:
    """ParseError if the internal entities would expand beyond MAX_ENTITY_EXPANSION_BYTES."""
    if b"<!ENTITY" not in body:
        return
    subset = _DOCTYPE_SUBSET.search(body)
    if subset is None:
        return
    values = {m.group(1): m.group(2)[1:-1] for m in _ENTITY_DECL.finditer(subset.group(1))}
    sizes: dict[bytes, int] = {}

    def size(name: bytes, depth: int = 0) -> int:
        if name in sizes:
            return sizes[name]
        if depth > 32:  # expat refuses deeper recursion itself
            return 0
        value = values[name]
        total = len(value)
        for ref in _ENTITY_REF.findall(value):
            if ref in values:
                total += size(ref, depth + 1)
        sizes[name] = total
        return total

    expanded = 0
    # finditer, not findall: a bomb is millions of references, and a list of them all would
    # take the memory this check exists to save.
    for match in _ENTITY_REF.finditer(body, subset.end()):
        ref = match.group(1)
        if ref in values:
            expanded += size(ref)
            if expanded > MAX_ENTITY_EXPANSION_BYTES:
                raise ParseError(
                    url,
                    "not parsed: its DTD entities expand to more than "
                    f"{MAX_ENTITY_EXPANSION_BYTES // (1024 * 1024)} MB",
                )


def _parse_xml_feed(
    feed_id: int, url: str, base: str, body: bytes, charset: str | None, *, is_html: bool
) -> ParsedFeed:
    _check_entity_expansion(url, body)
    # application/xml: feedparser then trusts the charset or the XML declaration (RFC 7303)
    # instead of assuming us-ascii for text/* and flagging every text/html server as bozo.
    # No Content-Location: feedparser would rewrite permalink guids ("abc" becomes
    # "https://host/feeds/abc"), so keys would change with the feed's URL; we resolve links.
    content_type = f"application/xml; charset={charset}" if charset else "application/xml"
    try:
        result = feedparser.parse(
            io.BytesIO(body),
            response_headers={"content-type": content_type},
            sanitize_html=False,  # we keep plain text; sanitizing was the costliest step
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser's own bugs on hostile input mean "unusable"
        raise ParseError(url, f"not a feed: feedparser failed ({_describe(exc)})") from exc
    entries: list[Any] = result.get("entries") or []
    problem = _describe(result.get("bozo_exception")) if result.get("bozo") else None
    if not entries:
        if is_html:
            raise ParseError(url, "not a feed (HTML page)")
        if not result.get("version"):
            raise ParseError(url, f"not a feed: {problem or 'no RSS, Atom or RDF root element'}")
        if problem and not _is_encoding_problem(result.get("bozo_exception")):
            raise ParseError(url, f"broken feed with no items: {problem}")
    feed: Any = result.get("feed") or {}
    site_url = _resolve(base, _str(feed.get("link")))
    # Relative item links point into the site, which may live on another host than the
    # feed (feedburner, a CDN), so the channel's link is their base; xml:base, if any,
    # was already applied by feedparser.
    items: list[Item] = []
    for entry in entries:
        item = _item_from_entry(feed_id, entry, site_url or base)
        if item is not None:
            items.append(item)
    skipped = len(entries) - len(items)
    if entries and not items:
        raise ParseError(url, f"no usable items: {skipped} had no id, link, title or text")
    return ParsedFeed(
        title=clean_text(_str(feed.get("title")), MAX_TITLE_CHARS) or None,
        site_url=site_url,
        items=_finish_items(items),
        warning=problem,
        skipped=skipped,
        updated_at=_feed_updated_at(feed),
    )


def _feed_updated_at(feed: Any) -> datetime | None:
    """When the feed says it last changed: the later of its updated date (RSS lastBuildDate,
    Atom updated) and its published date (RSS channel pubDate)."""
    dates = [_date_field(feed, key)[0] for key in ("updated", "published")]
    return max((date for date in dates if date is not None), default=None)


def _date_field(node: Any, key: str) -> tuple[datetime | None, str]:
    """A feed's or an entry's date `key` ("published", "updated"): (when, as written);
    feedparser's parse of it, else ours of a date with non-English names."""
    raw = _str(dict.get(node, key)).strip()
    return _from_struct_time(dict.get(node, f"{key}_parsed")) or _from_local_date(raw), raw


def _is_encoding_problem(exc: object) -> bool:
    return isinstance(exc, feedparser.CharacterEncodingOverride)


def _item_from_entry(feed_id: int, entry: Any, base: str) -> Item | None:
    # dict.get: FeedParserDict.get maps "updated" to "published" with a DeprecationWarning.
    guid = _str(dict.get(entry, "id")).strip() or None
    link = _str(dict.get(entry, "link")).strip()
    # Without a link element feedparser copies a permalink guid into "link", but "abc123"
    # is an id, not a relative URL: only an absolute one counts then.
    url = _resolve(base if dict.get(entry, "links") else "", link)
    summary = _str(dict.get(entry, "summary"))
    for content in dict.get(entry, "content") or []:
        value = _str(content.get("value"))
        if len(value) > len(summary):
            summary = value
    published_at, published_raw = None, None
    for key in ("published", "updated"):
        parsed, raw = _date_field(entry, key)
        if parsed is not None:
            published_at, published_raw = parsed, raw or None
            break
        published_raw = published_raw or raw or None
    return _make_item(
        feed_id,
        guid=guid,
        url=url,
        title=_str(dict.get(entry, "title")),
        summary=summary,
        author=_str(dict.get(entry, "author")),
        published_at=published_at,
        published_raw=published_raw,
    )


def _from_struct_time(value: object) -> datetime | None:
    """feedparser's *_parsed are struct_time in UTC; None when absent or out of range."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:5], min(value.tm_sec, 59), tzinfo=UTC)  # 60: leap second
    except (ValueError, OverflowError):
        return None


def _from_local_date(raw: str) -> datetime | None:
    """An RFC 822 date with French, German, Spanish, Italian or Portuguese names in it.

    feedparser knows English names only, and "Lun, 12 déc. 2016 10:00:00 +0100" or
    "Seg, 24 Set 2018 19:22:00 -0300" are common in European feeds.
    """
    match = _LOCAL_DATE.match(raw)
    if not match:
        return None
    day, month_name, year, hour, minute, second, zone = match.groups()
    folded = "".join(
        char for char in unicodedata.normalize("NFKD", month_name.lower()) if char.isascii()
    )
    month = _MONTHS.get(folded[:4]) or _MONTHS.get(folded[:3])
    offset_minutes = _zone_minutes(zone or "GMT")
    if month is None or offset_minutes is None:
        return None
    try:
        zone_info = timezone(timedelta(minutes=offset_minutes))
        second_59 = min(int(second or 0), 59)  # a leap second (60) is not a datetime
        local = datetime(
            int(year), month, int(day), int(hour), int(minute), second_59, 0, zone_info
        )
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _zone_minutes(zone: str) -> int | None:
    if zone[0] in "+-":
        minutes = int(zone[1:3]) * 60 + int(zone[3:5])
        return minutes if zone[0] == "+" else -minutes
    return _ZONES.get(zone.upper())


# --- JSON Feed -----------------------------------------------------------------------------


def _is_json_feed(body: bytes, content_type: str) -> bool:
    if not body.startswith(b"{"):
        return False
    media_type = content_type.split(";")[0].strip().lower()
    return media_type in ("application/feed+json", "application/json") or (
        b"jsonfeed.org/version/" in body[:4096]
    )


def _parse_json_feed(feed_id: int, url: str, base: str, body: bytes) -> ParsedFeed:
    """JSON Feed 1.0 and 1.1 (https://www.jsonfeed.org/version/1.1/)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError(url, f"not a feed: invalid JSON ({_describe(exc)})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise ParseError(url, "not a feed: JSON without an items list")
    entries = [entry for entry in document["items"] if isinstance(entry, dict)]
    site_url = _resolve(base, _str(document.get("home_page_url")))
    items: list[Item] = []
    for entry in entries:
        item = _item_from_json(feed_id, entry, site_url or base)
        if item is not None:
            items.append(item)
    skipped = len(document["items"]) - len(items)
    if skipped and not items:
        raise ParseError(url, f"no usable items: {skipped} had no id, link, title or text")
    return ParsedFeed(
        title=clean_text(_str(document.get("title")), MAX_TITLE_CHARS) or None,
        site_url=site_url,
        items=_finish_items(items),
        skipped=skipped,
    )


def _item_from_json(feed_id: int, entry: dict[str, Any], base: str) -> Item | None:
    raw_id = entry.get("id")
    # The spec asks readers to coerce a numeric id to a string.
    if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    texts = [_str(entry.get(key)) for key in ("summary", "content_text", "content_html")]
    published_at, published_raw = None, None
    for key in ("date_published", "date_modified"):
        raw = _str(entry.get(key)).strip()
        parsed = _from_iso(raw)
        if parsed is not None:
            published_at, published_raw = parsed, raw
            break
        published_raw = published_raw or raw or None
    authors = entry.get("authors")
    author = authors[0] if isinstance(authors, list) and authors else entry.get("author")
    return _make_item(
        feed_id,
        guid=_str(raw_id).strip() or None,
        url=_resolve(base, _str(entry.get("url")))
        or _resolve(base, _str(entry.get("external_url"))),
        title=_str(entry.get("title")),
        summary=max(texts, key=len),
        author=_str(author.get("name")) if isinstance(author, dict) else "",
        published_at=published_at,
        published_raw=published_raw,
    )


def _from_iso(raw: str) -> datetime | None:
    """RFC 3339 as JSON Feed requires; a missing offset is taken as UTC."""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


# --- shared --------------------------------------------------------------------------------


def _make_item(
    feed_id: int,
    *,
    guid: str | None,
    url: str | None,
    title: str,
    summary: str,
    author: str,
    published_at: datetime | None,
    published_raw: str | None,
) -> Item | None:
    """The normalised item, or None when nothing identifies or describes it."""
    summary_text = clean_text(summary, MAX_SUMMARY_CHARS)
    title_text = clean_text(title, MAX_TITLE_CHARS) or truncate(
        summary_text, _TITLE_FROM_SUMMARY_CHARS
    )
    guid = guid[:MAX_ID_CHARS] if guid else guid
    url = url if url is None or len(url) <= MAX_URL_CHARS else None
    if not (guid or url or title_text or summary_text):
        return None
    author_text = _author_name(clean_text(author, MAX_AUTHOR_CHARS)) or None  # clean_text cuts
    return Item(
        feed_id=feed_id,
        key=item_key(feed_id, guid, url, title_text, published_raw, summary_text),
        guid=guid,
        url=url,
        title=title_text,
        summary=summary_text,
        author=author_text,
        published_at=published_at,
        published_raw=published_raw,
        lang=None,  # detected later, for new and changed items only (feeds.language)
        content_hash=content_hash(title_text, summary_text, url, author_text, published_at),
    )


def _author_name(author: str) -> str:
    """The name in "jo@example.com (Jo Doe)" (RSS) or "Jo Doe (jo@example.com)" (Atom)."""
    match = _EMAIL_AND_NAME.match(author) or _NAME_AND_EMAIL.match(author)
    return match.group(1) if match else author


def _finish_items(items: list[Item]) -> tuple[Item, ...]:
    """Fix keys where one identifier covers several items.

    Some feeds link every item to the same page (a programme's home page, say); keyed by
    URL they would collapse into one, so guid-less items that share a URL but differ are
    keyed by their content. Some publishers reuse a guid for a new post: the last (oldest)
    item with that guid keeps the guid key it was first stored under, and the others are
    keyed by guid and content. Identical copies stay duplicates either way. Languages are
    detected in this separate pass because the model's tables then stay in the CPU cache:
    parsing is ~10% faster.
    """
    url_variants: dict[str, set[tuple[str, str, str | None]]] = {}
    guid_variants: dict[str, set[tuple[str, str, str | None]]] = {}
    last_with_guid: dict[str, int] = {}
    for index, item in enumerate(items):
        content = (item.title, item.summary, item.published_raw)
        if item.guid is not None:
            guid_variants.setdefault(item.guid, set()).add(content)
            last_with_guid[item.guid] = index
        elif item.url is not None:
            url_variants.setdefault(item.url, set()).add(content)
    shared_urls = {url for url, seen in url_variants.items() if len(seen) > 1}
    shared_guids = {guid for guid, seen in guid_variants.items() if len(seen) > 1}

    def key(index: int, item: Item) -> str:
        if item.guid is None and item.url in shared_urls:
            return item_key(item.feed_id, None, None, item.title, item.published_raw, item.summary)
        if item.guid in shared_guids and last_with_guid[item.guid] != index:
            return item_key(
                item.feed_id,
                None,
                None,
                item.title,
                item.published_raw,
                f"{item.guid}\n{item.summary}",
            )
        return item.key

    return tuple(replace(item, key=key(index, item)) for index, item in enumerate(items))


def _resolve(base: str, link: str) -> str | None:
    """`link` made absolute against `base`; None unless it is an http(s) URL."""
    link = link.strip()
    if not link:
        return None
    try:
        absolute = urljoin(base, link)
        parts = urlsplit(absolute)
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 literal)
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return absolute


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _describe(exc: object) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_WARNING_CHARS else text[: _MAX_WARNING_CHARS - 1] + "…"
