"""The command line: thin. Parses options, builds Services, calls jobs, prints results.

Startup failures (config, database) become one clear message and exit code 1.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from listener import __version__
from listener.cli.classify import (
    classify_command,
    label_command,
    model_group,
    reclassify_command,
    review_command,
)
from listener.cli_service import alerts_group, digest_command, run_command, status_command
from listener.cli_support import (
    DURATION,
    LIMIT_OPTION,
    SINCE_OPTION,
    WATCH_OPTION,
    Context,
    check_watch_name,
    handle_errors,
    now_utc,
    since_time,
)
from listener.cli_watch import watch_group
from listener.config import Settings, model_path, redacted
from listener.domain import FeedRow, is_http_url
from listener.errors import OpmlError, QuerySyntaxError
from listener.feeds.opml import OpmlFeed, parse_opml, render_opml
from listener.feeds.schedule import health_of
from listener.store import Store
from listener.store.search_query import to_fts_query

if TYPE_CHECKING:
    from listener.classify.model import Classifier
    from listener.jobs.services import Services


def load_model(settings: Settings) -> Classifier:
    """The classifier, loaded and checked once (its imports are heavy: only when needed)."""
    from listener.classify.model import load_classifier

    return load_classifier(
        model_path(settings), uncertain_below=settings.classifier.uncertain_below
    )


def make_services(settings: Settings, store: Store, *, classify: bool = True) -> Services:
    from listener.feeds.fetch import HttpFetcher
    from listener.jobs.services import Services

    classifier = load_model(settings) if classify else None
    if classifier is not None:
        store.record_model(classifier.version, {"path": str(model_path(settings))}, now_utc())
    return Services(
        settings=settings,
        store=store,
        fetcher=HttpFetcher(settings.poll.limits),
        classifier=classifier,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="listener")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="LISTENER_CONFIG",
    help="TOML settings file (default: the embedded defaults). Env: LISTENER_CONFIG.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="LISTENER_DB",
    help="SQLite database file (default: `database` in the settings). Env: LISTENER_DB.",
)
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), help="Log format.")
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Log level."
)
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    db_path: Path | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """listener: social listening for brand, PR, HR and customer-service teams.

    Polls RSS/Atom/JSON feeds politely, stores every item once in SQLite, and lets you
    search and export them.
    """
    ctx.obj = Context(config_path, db_path, log_format, log_level)


@cli.command("check-config")
@click.pass_obj
@handle_errors
def check_config(obj: Context) -> None:
    """Validate the settings and print the effective values (secrets hidden)."""
    data = redacted(obj.settings)
    data["database"] = str(obj.database_path())
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@cli.command("init")
@click.pass_obj
@handle_errors
def init(obj: Context) -> None:
    """Create the database (and import the default feeds) if it does not exist."""
    with obj.store() as store:
        counts = store.counts()
    click.echo(f"{store.path}: {counts['feeds']} feeds, {counts['items']} items")


# -- feeds ---------------------------------------------------------------------------------


@cli.group()
def feeds() -> None:
    """Add, list, remove, import and export feeds."""


@feeds.command("add")
@click.argument("urls", nargs=-1, required=True)
@click.option("--tag", "tags", multiple=True, help="Tag for these feeds (repeatable).")
@click.option("--interval", type=DURATION, help="Poll interval, e.g. 30m, 2h (default: global).")
@click.pass_obj
@handle_errors
def feeds_add(
    obj: Context, urls: tuple[str, ...], tags: tuple[str, ...], interval: int | None
) -> None:
    """Add one or more feeds by URL (adding a known feed merges its tags)."""
    bad = [url for url in urls if not is_http_url(url)]
    if bad:
        raise click.BadParameter(f"not an http(s) URL: {', '.join(bad)}", param_hint="URLS")
    with obj.store() as store:
        now = now_utc()
        for url in urls:
            added = store.add_feed(
                url, now=now, tags=[t.lower() for t in tags], interval_minutes=interval
            )
            click.echo(f"{'added' if added else 'updated'} {url}")


@feeds.command("remove")
@click.argument("urls", nargs=-1, required=True)
@click.pass_obj
@handle_errors
def feeds_remove(obj: Context, urls: tuple[str, ...]) -> None:
    """Remove feeds, with their items and poll history."""
    missing = False
    with obj.store() as store:
        for url in urls:
            removed = store.remove_feed(url)
            if removed is None:
                click.echo(f"not a known feed: {url}", err=True)
                missing = True
            else:
                click.echo(f"removed {url} ({removed} items)")
    if missing:
        sys.exit(1)


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.pass_obj
@handle_errors
def feeds_list(obj: Context, as_json: bool) -> None:
    """Each feed with its state (ok / failing since / gone / silent), last poll and items."""
    now = now_utc()
    with obj.store() as store:
        rows = store.list_feeds()
    silent_days = obj.settings.poll.silent_after_days
    if as_json:
        data = [_feed_json(row, now, silent_days) for row in rows]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for row in rows:
        state = health_of(row, now, silent_days)
        last = row.last_polled_at.strftime("%Y-%m-%d %H:%M") if row.last_polled_at else "never"
        tags = ",".join(row.tags) or "-"
        click.echo(f"{row.item_count:>6}  {last:<16}  {state:<40}  {tags:<24}  {row.url}")
    click.echo(f"{len(rows)} feeds", err=True)


def _feed_json(row: FeedRow, now: datetime, silent_days: int) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return {
        "url": row.url,
        "title": row.title,
        "tags": list(row.tags),
        "state": health_of(row, now, silent_days),
        "items": row.item_count,
        "interval_minutes": row.interval_minutes,
        "last_polled_at": iso(row.last_polled_at),
        "next_poll_at": iso(row.next_poll_at),
        "last_status": row.last_status,
        "last_http_status": row.last_http_status,
        "error_count": row.error_count,
        "last_error": row.last_error,
        "failing_since": iso(row.failing_since),
        "gone_at": iso(row.gone_at),
        "last_warning": row.last_warning,
        "last_new_item_at": iso(row.last_new_item_at),
    }


@feeds.command("import")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--tag", "tags", multiple=True, help="Extra tag for every imported feed.")
@click.pass_obj
@handle_errors
def feeds_import(obj: Context, path: Path, tags: tuple[str, ...]) -> None:
    """Import an OPML file; folders and categories become tags. Re-importing is harmless."""
    try:
        found, problems = parse_opml(path.read_bytes())
    except OpmlError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    for problem in problems:
        click.echo(f"{path}: skipped {problem}", err=True)
    added = 0
    with obj.store() as store:
        now = now_utc()
        for feed in found:
            added += store.add_feed(
                feed.url, now=now, tags=[*feed.tags, *(t.lower() for t in tags)], title=feed.title
            )
    click.echo(f"{path}: {added} feeds added, {len(found) - added} already known")


@feeds.command("export")
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="Write to this file (default: stdout).",
)
@click.pass_obj
@handle_errors
def feeds_export(obj: Context, output: Any) -> None:
    """Write every feed as OPML 2.0 (tags in `category`)."""
    with obj.store() as store:
        rows = store.list_feeds()
    opml = render_opml(
        (OpmlFeed(url=row.url, title=row.title, tags=row.tags) for row in rows), now=now_utc()
    )
    output.write(opml)


# -- polling -------------------------------------------------------------------------------


@cli.command("poll")
@click.option("--all", "all_feeds", is_flag=True, help="Poll every feed now, due or not.")
@click.pass_obj
@handle_errors
def poll(obj: Context, all_feeds: bool) -> None:
    """Poll the feeds that are due (every feed with --all) once, then exit.

    Feeds declared in the config's [[feeds]] are added first.
    """
    _poll_once(obj, all_feeds=all_feeds)


def _poll_once(obj: Context, *, all_feeds: bool) -> None:
    from listener.jobs.poll import poll_feeds, sync_config

    settings = obj.settings
    with obj.store() as store:
        services = make_services(settings, store)
        try:
            sync_config(services, now_utc())
            started = time.monotonic()
            results = poll_feeds(services, now_utc(), all_feeds=all_feeds)
            elapsed = time.monotonic() - started
        finally:
            services.fetcher.close()
    by_status: dict[str, int] = {}
    for result in results:
        by_status[result.status] = by_status.get(result.status, 0) + 1
    new = sum(r.new for r in results)
    updated = sum(r.updated for r in results)
    statuses = (
        ", ".join(
            f"{count} {status.replace('_', ' ')}" for status, count in sorted(by_status.items())
        )
        or "nothing due"
    )
    click.echo(
        f"polled {len(results)} feeds in {elapsed:.1f} s: {statuses}; "
        f"{new} new items, {updated} updated"
    )
    for result in results:
        if result.status in ("failed", "gone"):
            click.echo(f"  {result.status:<6} {result.url}: {result.error}")


# -- reading back --------------------------------------------------------------------------


@cli.command("search")
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
def search(
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


@cli.command("export")
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
def export(
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
                writer.writerow(row)
        else:
            for row in rows:
                output.write(json.dumps(row, ensure_ascii=False) + "\n")


cli.add_command(run_command)
cli.add_command(status_command)
cli.add_command(digest_command)
cli.add_command(watch_group)
cli.add_command(alerts_group)
cli.add_command(classify_command)
cli.add_command(model_group)
cli.add_command(label_command)
cli.add_command(review_command)
cli.add_command(reclassify_command)


def main() -> None:
    cli(prog_name="listener")
