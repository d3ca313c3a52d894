"""`listener feeds add|list|remove|import|export` and `listener poll`: the feeds, and one
poll of them (the daemon's poll job, run once)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from listener.cli.support import DURATION, Context, handle_errors, now_utc, output_file, plural
from listener.daemon import install_signal_handlers
from listener.domain import FeedRow, is_http_url
from listener.errors import OpmlError
from listener.feeds.opml import OpmlFeed, parse_opml, render_opml
from listener.feeds.schedule import health_of, is_network_down


@click.group("feeds")
def feeds_group() -> None:
    """Add, list, remove, import and export feeds."""


@feeds_group.command("add")
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


@feeds_group.command("remove")
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
                click.echo(f"removed {url} ({plural(removed, 'item')})")
    if missing:
        sys.exit(1)


@feeds_group.command("list")
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
    if rows:
        click.echo(f"{'items':>6}  {'last poll (UTC)':<16}  {'state':<40}  {'tags':<16}  feed")
    for row in rows:
        state = health_of(row, now, silent_days)
        last = row.last_polled_at.strftime("%Y-%m-%d %H:%M") if row.last_polled_at else "never"
        tags = ",".join(row.tags) or "-"
        name = f"{row.title}  {row.url}" if row.title else row.url
        click.echo(f"{row.item_count:>6}  {last:<16}  {state:<40}  {tags:<16}  {name}")
        if row.last_error and (row.error_count or row.gone_at):
            click.echo(f"{'':>6}  last error: {row.last_error}")
    click.echo(f"{plural(len(rows), 'feed')}", err=True)


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


@feeds_group.command("import")
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
    click.echo(f"{path}: {plural(added, 'feed')} added, {len(found) - added} already known")


@feeds_group.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default="-",
    help="Write to this file, replaced once the OPML is whole (default: stdout).",
)
@click.pass_obj
@handle_errors
def feeds_export(obj: Context, output: Path) -> None:
    """Write every feed as OPML 2.0 (tags in `category`)."""
    with obj.store() as store:
        rows = store.list_feeds()
    opml = render_opml(
        (OpmlFeed(url=row.url, title=row.title, tags=row.tags) for row in rows), now=now_utc()
    )
    with output_file(output) as out:
        out.write(opml)


@click.command("poll")
@click.option("--all", "all_feeds", is_flag=True, help="Poll every feed now, due or not.")
@click.pass_obj
@handle_errors
def poll_command(obj: Context, all_feeds: bool) -> None:
    """Poll the feeds that are due (every feed with --all) once, then exit.

    Feeds declared in the config's [[feeds]] are added first.
    """
    _poll_once(obj, all_feeds=all_feeds)


def _poll_once(obj: Context, *, all_feeds: bool) -> None:
    from listener.app import open_services
    from listener.jobs.poll import poll_feeds, sync_config

    with obj.store() as store, open_services(obj.settings, store, defer_model=True) as services:
        sync_config(services, now_utc())
        started = time.monotonic()
        # Ctrl-C or SIGTERM: stop fetching, save what was fetched, print the summary.
        restore = install_signal_handlers(services.stop, event="poll_stopping")
        try:
            results = poll_feeds(services, now_utc(), all_feeds=all_feeds)
        finally:
            restore()
        elapsed = time.monotonic() - started
        stopped = services.stop.is_set()
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
        f"polled {plural(len(results), 'feed')} in {elapsed:.1f} s: {statuses}; "
        f"{plural(new, 'new item')}, {updated} updated"
    )
    if is_network_down(results):
        click.echo(
            f"no network? every feed failed to connect ({plural(len(results), 'feed')}): "
            f"{results[0].error}"
        )
    else:
        for result in results:
            if result.status in ("failed", "gone"):
                click.echo(f"  {result.status:<6} {result.url}: {result.error}")
    if stopped:
        click.echo("stopped by a signal: what was fetched is saved, the rest stays due", err=True)
        sys.exit(130)  # 128 + SIGINT, the shell's convention for an interrupted command
    unsaved = [result.url for result in results if result.extra.get("save_failed")]
    if unsaved:
        click.echo(f"could not save {len(unsaved)} of {len(results)} feeds", err=True)
        sys.exit(1)
