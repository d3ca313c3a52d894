"""`listener web`: the database in a browser, through Datasette (the optional `web` extra),
read-only, with a metadata file that names the tables and columns, canned queries for the
teams, and full-text search on items."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import click

from listener.cli.support import Context, handle_errors
from listener.store import MAX_ITEM_AGE

# Times are stored as ISO text in UTC ("2026-11-26T08:00:00Z"), so they compare as text.
_WEEK_DAYS = 7
_WEEK_AGO = f"strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-{_WEEK_DAYS} days')"
# The digest's rule (MAX_ITEM_AGE): an item counts as new when first seen, unless its own
# date is more than MAX_ITEM_AGE older than that: a new feed's archive is not news. For
# "first seen in the last 7 days", that is "dated within the last 7 + MAX_ITEM_AGE".
_NEW_THIS_WEEK = f"""items.fetched_at >= {_WEEK_AGO}
  and items.published_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now',
    '-{_WEEK_DAYS + MAX_ITEM_AGE.days} days')"""

QUERIES: dict[str, dict[str, Any]] = {
    "this_week_by_function": {
        "title": "This week by function",
        "description": "New items of the last 7 days per business function, counted as"
        " `listener status` and the digests count them: first seen in those days (a new"
        " feed's archive, dated over a week before, is left out); a person's correction wins"
        " over the model; an item with two labels counts for both; (uncertain) counts the"
        " items the model was unsure of, which count in no function.",
        "sql": f"""select function, count(*) as items from (
  select item_labels.label as function
  from item_labels join items on items.id = item_labels.item_id
  where {_NEW_THIS_WEEK}
  union all
  select '(uncertain)' from items_view as items
  where items.uncertain = 1 and {_NEW_THIS_WEEK}
)
group by function order by items desc""",
    },
    "function_items": {
        "title": "A function's items this week",
        "description": "New items of one function (marketing, communication, human_resources,"
        " customer_service, business_intelligence, other) in the last 7 days, as in"
        " This week by function.",
        "sql": f"""select items.id, items.published_at, feeds.title as feed, items.title,
  items.url, item_labels.score, item_labels.source
from item_labels join items on items.id = item_labels.item_id
join feeds on feeds.id = items.feed_id
where item_labels.label = :function and {_NEW_THIS_WEEK}
order by items.published_at desc limit 500""",
    },
    "watch_mentions": {
        "title": "A watch's mentions",
        "description": "The items that mention a watch (by name), newest first, with the"
        " terms that matched.",
        "sql": """select items.id, mentions.published_at, feeds.title as feed, items.title,
  items.url, mentions.terms
from mentions join watches on watches.id = mentions.watch_id
join items on items.id = mentions.item_id join feeds on feeds.id = items.feed_id
where watches.name = :watch
order by mentions.published_at desc limit 500""",
    },
    "uncertain_items": {
        "title": "Uncertain items",
        "description": "Items the model was unsure of and nobody has labelled yet: correct"
        " them with `listener label ITEM LABEL`.",
        "sql": """select id, published_at, feed_title as feed, title, url
from items_view where uncertain = 1
order by published_at desc limit 500""",
    },
    "feed_health": {
        "title": "Feed health",
        "description": "Every feed with its last poll, state and last error, failing ones first.",
        "sql": """select url, title, last_polled_at, last_status, error_count, last_error,
  failing_since, gone_at, last_new_item_at,
  (select count(*) from items where items.feed_id = feeds.id) as items
from feeds
order by (gone_at is not null) desc, error_count desc, url""",
    },
}


def metadata(database: str) -> dict[str, Any]:
    """The Datasette metadata: titles and column descriptions (docs/schema.md says more),
    full-text search on items, and the canned queries."""
    return {
        "title": "listener",
        "description": "Feed items by business function, watch and feed. Read-only.",
        "databases": {
            database: {
                "tables": {
                    "items": {
                        "description": "Every item once, as its feed gave it.",
                        "fts_table": "items_fts",
                        "fts_pk": "id",
                        "sort_desc": "published_at",
                        "columns": {
                            "feed_id": "the feed (feeds.id)",
                            "title": "plain-text title",
                            "summary": "plain-text summary",
                            "published_at": "the item's date, UTC (first seen when missing)",
                            "fetched_at": "first seen, UTC",
                            "lang": "detected language",
                        },
                    },
                    "feeds": {
                        "description": "The feeds polled, with their health.",
                        "columns": {
                            "last_status": "ok, not_modified, unchanged, failed or gone",
                            "last_error": "why the last poll failed",
                            "tags": "JSON list of tags",
                        },
                    },
                    "item_labels": {
                        "description": "Each item's effective labels: a person's, else the"
                        " confident model's.",
                        "columns": {"source": "human or model", "score": "1.0 for a person"},
                    },
                    "mentions": {"description": "Items matched by each watch."},
                    "watches": {"description": "Brand, competitor, person and topic queries."},
                },
                "queries": QUERIES,
            }
        },
    }


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8001, show_default=True, help="Port to listen on.")
@click.pass_obj
@handle_errors
def web_command(obj: Context, host: str, port: int) -> None:
    """Browse the database in a web browser (Datasette, read-only): items by function,
    watch and feed, full-text search, canned queries. Needs `pip install 'listener[web]'`.
    """
    if importlib.util.find_spec("datasette") is None:
        raise click.ClickException("listener web needs Datasette: pip install 'listener[web]'")
    path = obj.database_path()
    if not path.exists():
        raise click.ClickException(f"no database at {path}: run `listener init` first")
    with obj.store():
        pass  # migrations applied, so the views the queries read exist
    from datasette.cli import cli as datasette_cli  # the optional extra

    with tempfile.TemporaryDirectory() as folder:
        meta = Path(folder) / "metadata.json"
        meta.write_text(json.dumps(metadata(path.stem), indent=2), encoding="utf-8")
        click.echo(f"listener web: http://{host}:{port}/{path.stem} (Ctrl-C stops)", err=True)
        # In this process (uvicorn stops cleanly on SIGTERM and Ctrl-C), so no server
        # outlives the command.
        datasette_cli.main(
            ["serve", str(path), "--metadata", str(meta), "--host", host, "--port", str(port)],
            prog_name="listener web",
            standalone_mode=False,
        )
