"""Pure: OPML 2.0 in and out. Nested outlines and `category` attributes become tags."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from listener.domain import is_http_url
from listener.errors import OpmlError


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    url: str
    title: str | None
    tags: tuple[str, ...]


def parse_opml(data: bytes) -> tuple[list[OpmlFeed], list[str]]:
    """Feeds found (in document order, first occurrence wins) and one problem line per outline
    skipped."""
    if b"<!ENTITY" in data or b"<!DOCTYPE" in data:
        # Entity expansion is the classic XML bomb; OPML never needs a DTD.
        raise OpmlError("OPML with a DOCTYPE or entities is refused")
    try:
        root = ET.fromstring(data)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        raise OpmlError(f"not well-formed XML: {exc}") from exc
    if root.tag != "opml":
        raise OpmlError(f"root element is <{root.tag}>, not <opml>")
    body = root.find("body")
    if body is None:
        raise OpmlError("no <body> element")
    feeds: dict[str, OpmlFeed] = {}
    problems: list[str] = []

    def walk(node: ET.Element, folders: tuple[str, ...]) -> None:
        for outline in node.findall("outline"):
            url = (outline.get("xmlUrl") or "").strip()
            label = (outline.get("title") or outline.get("text") or "").strip()
            if not url:
                walk(outline, (*folders, label) if label else folders)
                continue
            if not is_http_url(url):
                problems.append(f"outline {label or url!r}: not an http(s) URL: {url!r}")
                continue
            categories = [
                part.strip()
                for category in (outline.get("category") or "").split(",")
                for part in category.split("/")
                if part.strip()
            ]
            tags = tuple(sorted({t.lower() for t in (*folders, *categories)}))
            if url not in feeds:
                feeds[url] = OpmlFeed(url=url, title=label or None, tags=tags)

    walk(body, ())
    return list(feeds.values()), problems


def render_opml(feeds: Iterable[OpmlFeed], *, now: datetime, title: str = "listener feeds") -> str:
    """Valid OPML 2.0: one outline per feed, tags in `category` (comma-separated)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now)
    body = ET.SubElement(root, "body")
    for feed in feeds:
        attrs = {"type": "rss", "text": feed.title or feed.url, "xmlUrl": feed.url}
        if feed.title:
            attrs["title"] = feed.title
        if feed.tags:
            attrs["category"] = ",".join(feed.tags)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
