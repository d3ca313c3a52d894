"""`listener search` and `listener export`: the stored items, read back."""

from __future__ import annotations

import csv
import json
from typing import Any

import click

from listener.cli.support import (
    LIMIT_OPTION,
    SINCE_OPTION,
    WATCH_OPTION,
    Context,
    check_watch_name,
    handle_errors,
    since_time,
)
from listener.errors import QuerySyntaxError
from listener.store.search_query import to_fts_query


@click.command("search")
@click.argument("query")
@SINCE_OPTION
@click.option("--feed", "feed_url", help="Only items of this feed URL.")
@click.option("--tag", help="Only items of feeds with this tag.")
@WATCH_OPTION
@LIMIT_OPTION
@click.option(
    "--order",
    type=click.Choice(["best", "newest"]),
    default="best",
    show_default=True,
    help="best: relevance (title matches weigh more); newest: by date.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@click.pass_obj
@handle_errors
def search_command(
    obj: Context,
    query: str,
    since: int | None,
    feed_url: str | None,
    tag: str | None,
    watch: str | None,
    limit: int,
    order: str,
    as_json: bool,
) -> None:
    """Full-text search over titles and summaries (accents and case folded).

    QUERY: words, "exact phrases", AND / OR / NOT, parentheses, prefix*.
    """
    try:
        fts_query = to_fts_query(query)
    except QuerySyntaxError as exc:
        raise click.UsageError(str(exc)) from exc
    with obj.store() as store:
        check_watch_name(store, watch)
        rows = store.search(
            fts_query,
            since=since_time(since),
            feed_url=feed_url,
            tag=tag,
            watch=watch,
            limit=limit,
            order=order,
        )
    for row in rows:
        row.pop("rank", None)
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(
                f"{row['published_at'][:10]}  {row['title']}\n            {row['url'] or ''}"
                f"  ({row['feed_title'] or row['feed_url']})\n            {row['snippet']}"
            )
    if not as_json:
        click.echo(f"{len(rows)} items", err=True)


EXPORT_COLUMNS = [
    "id",
    "key",
    "feed_url",
    "feed_title",
    "guid",
    "url",
    "title",
    "summary",
    "author",
    "published_at",
    "fetched_at",
    "lang",
]


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): a feed must not be able
# to put =HYPERLINK(...) or =cmd|... into an analyst's sheet.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """Text that starts like a formula gets a leading apostrophe (shown as text, not run)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


@click.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="JSON lines or CSV (with a header row).",
)
@SINCE_OPTION
@click.option("--feed", "feed_url", help="Only items of this feed URL.")
@click.option("--tag", help="Only items of feeds with this tag.")
@WATCH_OPTION
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="Write to this file (default: stdout).",
)
@click.pass_obj
@handle_errors
def export_command(
    obj: Context,
    fmt: str,
    since: int | None,
    feed_url: str | None,
    tag: str | None,
    watch: str | None,
    output: Any,
) -> None:
    """Stream every item (oldest first) as JSON lines or CSV, in bounded memory."""
    with obj.store() as store:
        check_watch_name(store, watch)
        rows = store.iter_items(since=since_time(since), feed_url=feed_url, tag=tag, watch=watch)
        if fmt == "csv":
            writer = csv.DictWriter(output, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({name: spreadsheet_safe(value) for name, value in row.items()})
        else:
            for row in rows:
                output.write(json.dumps(row, ensure_ascii=False) + "\n")
