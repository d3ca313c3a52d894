"""`listener watch add|list|remove|test|backfill`: brand, competitor, person and topic
queries, their mentions, and what a query would match before it is saved."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from listener.cli.support import (
    LIMIT_OPTION,
    SINCE_OPTION,
    Context,
    handle_errors,
    now_utc,
    plural,
    since_time,
)
from listener.config import check_watch
from listener.domain import WATCH_KINDS, Watch, WatchRow
from listener.errors import QuerySyntaxError
from listener.jobs.watches import (
    active_watches,
    backfill_watches,
    count_to_backfill,
    preview_watch,
    sync_config_watches,
)
from listener.store import Store
from listener.watches.highlight import segments, snippet, term_spans
from listener.watches.matcher import ActiveWatch
from listener.watches.query import parse_query

SNIPPET_CHARS = 160


@click.group("watch")
def watch_group() -> None:
    """Watch brands, competitors, people and topics: keyword queries over every item."""


@watch_group.command("add")
@click.argument("name")
@click.argument("query")
@click.option(
    "--kind",
    type=click.Choice(WATCH_KINDS),
    default="brand",
    show_default=True,
    help="What the watch follows (competitors count in share of voice).",
)
@click.option(
    "--tag", "tags", multiple=True, help="Only items of feeds with this tag (repeatable)."
)
@click.option(
    "--no-backfill", is_flag=True, help="Do not match the stored items now (the daemon will)."
)
@click.pass_obj
@handle_errors
def watch_add(
    obj: Context, name: str, query: str, kind: str, tags: tuple[str, ...], no_backfill: bool
) -> None:
    """Add a watch, or change the one named NAME; then match the stored items against it.

    QUERY: words, "exact phrases", AND / OR / NOT (a space means AND), ( ), NEAR/n and
    prefix* — case and accents never matter. Example: '"Acme Corp" OR acme NEAR/3 rachat'.
    """
    watch = Watch(name=name, query=query, kind=kind, tags=tags)
    try:
        parse_query(query)
    except QuerySyntaxError as exc:
        raise click.UsageError(f"bad query: {exc}") from exc
    problems = check_watch(watch)
    if problems:
        raise click.UsageError("; ".join(problems))
    with obj.store() as store:
        sync_config_watches(store, obj.settings, now_utc())
        existing = _find(store, name)
        if existing is not None and existing.origin == "config":
            raise click.UsageError(f"watch {name!r} is defined in the config file; change it there")
        outcome = store.save_watch(watch, origin="cli", now=now_utc())
        click.echo(
            f"{outcome} watch {name!r}" if outcome != "unchanged" else f"watch {name!r} unchanged"
        )
        if not no_backfill:
            _backfill(store)
        row = _row(store, name)
        click.echo(f"{name}: {plural(row.mention_count, 'mention')} in stored items")


@watch_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.pass_obj
@handle_errors
def watch_list(obj: Context, as_json: bool) -> None:
    """Every watch with its mentions, last mention and backfill state."""
    with obj.store() as store:
        sync_config_watches(store, obj.settings, now_utc())
        rows = store.list_watches(with_counts=True)
        newest = store.max_item_id()
    if as_json:
        click.echo(
            json.dumps([_watch_json(row, newest) for row in rows], indent=2, ensure_ascii=False)
        )
        return
    if not rows:
        click.echo("no watches yet: listener watch add NAME QUERY, or [[watches]] in the config")
        return
    for row in rows:
        last = row.last_mention_at.strftime("%Y-%m-%d %H:%M") if row.last_mention_at else "never"
        state = "" if row.matched_through >= newest else "  (backfill pending)"
        scope = f"  tags: {', '.join(row.tags)}" if row.tags else ""
        click.echo(
            f"{row.name:<20} {row.kind:<10} {plural(row.mention_count, 'mention'):>11}, last {last}"
            f"  [{row.origin}]{scope}{state}\n    {row.query}"
        )


@watch_group.command("remove")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
@handle_errors
def watch_remove(obj: Context, names: tuple[str, ...]) -> None:
    """Remove watches with their mentions, spikes and alerts."""
    with obj.store() as store:
        sync_config_watches(store, obj.settings, now_utc())
        for name in names:
            row = _row(store, name)
            if row.origin == "config":
                raise click.UsageError(
                    f"watch {name!r} is defined in the config file; remove it there"
                )
            store.remove_watch(name)
            click.echo(f"removed watch {name!r} ({plural(row.mention_count, 'mention')})")


@watch_group.command("test")
@click.argument("name", required=False)
@click.option("--query", help="Test this query instead of a saved watch's.")
@click.option("--tag", "tags", multiple=True, help="With --query: only feeds with this tag.")
@SINCE_OPTION
@LIMIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@click.pass_obj
@handle_errors
def watch_test(
    obj: Context,
    name: str | None,
    query: str | None,
    tags: tuple[str, ...],
    since: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show what a watch (NAME) or a query (--query) matches in the stored items, newest
    first, with the matched terms highlighted. Nothing is saved."""
    if (name is None) == (query is None):
        raise click.UsageError("give a watch NAME or --query, not both")
    with obj.store() as store:
        sync_config_watches(store, obj.settings, now_utc())
        if query is not None:
            try:
                active = ActiveWatch(0, "query", 0, parse_query(query), tags)
            except QuerySyntaxError as exc:
                raise click.UsageError(f"bad query: {exc}") from exc
        else:
            row = _row(store, name or "")
            parsed = active_watches([row])
            if not parsed:
                raise click.UsageError(f"the stored query of {name!r} no longer parses")
            active = parsed[0]
        cutoff = since_time(since)
        with click.progressbar(
            length=store.count_items_after(0), label="matching", file=sys.stderr
        ) as bar:
            result = preview_watch(store, active, since=cutoff, on_batch=bar.update)
        shown = result.matches[:limit]
        rows = store.items_by_ids([item_id for item_id, _ in shown])
    for item_id, terms in shown:
        item = rows[item_id]
        if as_json:
            click.echo(json.dumps({**_brief(item), "terms": list(terms)}, ensure_ascii=False))
            continue
        click.echo(
            f"#{item_id}  {item['published_at'][:16].replace('T', ' ')}  "
            f"{item['feed_title'] or item['feed_url']}  [{item['labels'] or '-'}]"
        )
        title = " ".join(item["title"].split())
        click.echo("    " + _highlighted(title, term_spans(title, terms)))
        summary = " ".join(item["summary"].split())
        spans = term_spans(summary, terms)
        if spans:
            click.echo("    " + _highlighted(*snippet(summary, spans, SNIPPET_CHARS)))
        click.echo(f"    terms: {', '.join(terms)}")
    if not as_json:
        click.echo(
            f"{len(result.matches)} of {plural(result.scanned, 'item')} match"
            + (f" (showing the newest {len(shown)})" if len(shown) < len(result.matches) else "")
        )


@watch_group.command("backfill")
@click.pass_obj
@handle_errors
def watch_backfill(obj: Context) -> None:
    """Match the stored items against the watches that have not seen them all yet (new or
    changed watches; the daemon does this before each poll)."""
    with obj.store() as store:
        sync_config_watches(store, obj.settings, now_utc())
        read = _backfill(store)
        click.echo(f"matched {plural(read, 'item')}" if read else "every watch is up to date")


def _backfill(store: Store) -> int:
    total = count_to_backfill(store)
    if not total:
        return 0
    with click.progressbar(length=total, label="matching stored items", file=sys.stderr) as bar:
        return backfill_watches(store, on_batch=bar.update)


def _find(store: Store, name: str) -> WatchRow | None:
    return next((row for row in store.list_watches(with_counts=True) if row.name == name), None)


def _row(store: Store, name: str) -> WatchRow:
    row = _find(store, name)
    if row is None:
        known = ", ".join(r.name for r in store.list_watches()) or "none yet"
        raise click.UsageError(f"no watch named {name!r} (known: {known})")
    return row


def _highlighted(text: str, spans: Sequence[tuple[int, int]]) -> str:
    return "".join(
        click.style(piece, bold=True, fg="yellow") if marked else piece
        for piece, marked in segments(text, spans)
    )


def _brief(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "published_at", "feed_title", "feed_url", "title", "url", "labels")
    return {key: item[key] for key in keys}


def _watch_json(row: WatchRow, newest: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "query": row.query,
        "tags": list(row.tags),
        "origin": row.origin,
        "mentions": row.mention_count,
        "last_mention_at": row.last_mention_at.isoformat() if row.last_mention_at else None,
        "backfill_pending": row.matched_through < newest,
    }
