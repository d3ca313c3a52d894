"""`listener search` and `listener export`: the stored items, read back."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import click

from listener.cli.support import (
    LIMIT_OPTION,
    Context,
    handle_errors,
    item_filter,
    item_filter_options,
    output_file,
    plural,
)
from listener.errors import QuerySyntaxError
from listener.watches.fts import to_fts_query


@click.command("search")
@click.argument("query")
@item_filter_options
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
    /,
    query: str,
    limit: int,
    order: str,
    as_json: bool,
    **filters: Any,
) -> None:
    """Full-text search over titles and summaries (accents and case folded).

    QUERY: the watch language: words, "exact phrases", AND / OR / NOT, parentheses,
    prefix*, NEAR/n (see `listener watch test`). Each item is
    printed with its id (for `listener label`) and its labels with their scores.
    """
    try:
        fts_query = to_fts_query(query)
    except QuerySyntaxError as exc:
        raise click.UsageError(f"bad query: {exc}") from exc
    with obj.store() as store:
        rows = store.search(fts_query, item_filter(store, filters), limit=limit, order=order)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(
                f"#{row['id']}  {row['published_at'][:10]}  {row['title']}\n"
                f"    {describe_labels(row)}\n"
                f"    {row['url'] or ''}  ({row['feed_title'] or row['feed_url']})\n"
                f"    {row['snippet']}"
            )
    if not as_json:
        click.echo(plural(len(rows), "item"), err=True)


def describe_labels(row: dict[str, Any]) -> str:
    """`human_resources 0.91, communication 0.42`, `human_resources (corrected by hand)`,
    `uncertain (best guess: marketing 0.31)` or `not classified yet`."""
    scores: dict[str, float] = row["scores"]
    if row["label_source"] == "human":
        return f"{', '.join(row['labels'])} (corrected by hand)"
    if row["labels"]:
        return ", ".join(f"{label} {scores.get(label, 0.0):.2f}" for label in row["labels"])
    if row["uncertain"]:
        label, score = max(scores.items(), key=lambda pair: (pair[1], pair[0]))
        return f"uncertain (best guess: {label} {score:.2f})"
    return "not classified yet"


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
    "labels",
    "label_source",
    "uncertain",
    "scores",
    "model_version",
    "watches",
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
@item_filter_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default="-",
    help="Write to this file, replaced once the export is whole (default: stdout).",
)
@click.pass_obj
@handle_errors
def export_command(
    obj: Context,
    /,
    fmt: str,
    output: Path,
    **filters: Any,
) -> None:
    """Stream every item (oldest first) as JSON lines or CSV, in bounded memory.

    Each row carries the item's labels (a person's correction, else the model's), whether
    they are a person's, whether the model was uncertain, the model's scores per label,
    the model version and the watches that mention it. In CSV, lists are joined with `;`
    and the scores are a JSON object.
    """
    count = 0
    with obj.store() as store, output_file(output) as out:
        rows = store.iter_items(item_filter(store, filters))
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for row in rows:
                cells = row | {
                    "labels": ";".join(row["labels"]),
                    "watches": ";".join(row["watches"]),
                    "scores": json.dumps(row["scores"], sort_keys=True),
                }
                writer.writerow({name: spreadsheet_safe(value) for name, value in cells.items()})
                count += 1
        else:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    # On stderr, as `search` does: stdout is the export itself.
    where = "" if str(output) == "-" else f" to {output}"
    click.echo(f"{plural(count, 'item')} exported{where}", err=True)
