"""Commands for the service: run (the daemon), status, digest (preview or send now), alerts."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import structlog

from listener.classify.deferred import model_file_version
from listener.cli.support import Context, handle_errors, now_utc, output_file, plural
from listener.config import model_path
from listener.digest.periods import (
    describe_send_time,
    is_digest_due,
    latest_due_period,
    next_send_period,
)
from listener.domain import LABELS, Recipient
from listener.feeds.schedule import health_of
from listener.store import TOTAL, UNCERTAIN, Store
from listener.watches.spikes import warm_up_ends_at

log = structlog.get_logger(__name__)


@click.command("run")
@click.pass_obj
@handle_errors
def run_command(obj: Context) -> None:
    """Run the service: poll due feeds, send due digests and spike alerts, daily maintenance,
    until stopped.

    One process per database (a second one refuses to start). SIGTERM or Ctrl-C stops it
    after the job in progress; a restart resumes the schedule from the database.
    """
    from listener.app import run_daemon
    from listener.daemon import daemon_lock

    obj.configure_logging(cache=True)
    with daemon_lock(obj.database_path()), obj.store() as store:
        run_daemon(obj.settings, store, config_note=obj.config_file.describe())


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@click.pass_obj
@handle_errors
def status_command(obj: Context, as_json: bool) -> None:
    """Is the daemon alive, what runs next, feed health, item counts, recent digests."""

    now = now_utc()
    settings = obj.settings
    with obj.store() as store:
        daemon = store.daemon_state()
        beat = store.last_heartbeat()
        feeds = store.list_feeds()
        counts = store.counts()
        digests = store.recent_digests(limit=2 * max(len(settings.recipients), 1))
        week = _window_counts(store, now - timedelta(days=7), now)
        day = _window_counts(store, now - timedelta(days=1), now)
        watches = store.list_watches()
        newest = store.max_item_id()
        open_spikes = store.open_spikes()
        next_digests = {
            person.name: _next_digest(store, person, now, settings.digest.catch_up_hours)
            for person in settings.recipients
        }
    health: dict[str, int] = {}
    for feed in feeds:
        state = health_of(feed, now, settings.poll.silent_after_days).split(" ")[0]
        health[state] = health.get(state, 0) + 1
    alive = _daemon_alive(daemon, beat, now, settings.daemon.heartbeat_s)
    model_file = model_path(settings)
    file_version = model_file_version(model_file)
    report: dict[str, Any] = {
        "config_file": obj.config_file.describe(),
        "database": str(obj.database_path()),
        "daemon": {
            **(daemon or {}),
            "alive": alive,
            "next_runs": json.loads(daemon["next_runs"]) if daemon else {},
        },
        "model_file": {"path": str(model_file), "version": file_version},
        "feeds": {"total": counts["feeds"], **health},
        "items": {
            "total": counts["items"],
            "last_24h_new": day.get(TOTAL, 0),
            "last_24h_by_function": {k: day.get(k, 0) for k in LABELS},
            "last_24h_uncertain": day.get(UNCERTAIN, 0),
            "last_7d_new": week.get(TOTAL, 0),
            "last_7d_by_function": {k: week.get(k, 0) for k in LABELS},
            "last_7d_uncertain": week.get(UNCERTAIN, 0),
        },
        "digests": digests,
        "next_digests": next_digests,
        "watches": {
            "total": len(watches),
            "backfill_pending": [w.name for w in watches if w.matched_through < newest],
            "open_spikes": sorted(
                f"{name}/{function}"
                for (watch_id, function) in open_spikes
                for name in [w.name for w in watches if w.id == watch_id]
            ),
        },
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    click.echo(f"config:   {report['config_file']}")
    click.echo(f"database: {report['database']}")
    if daemon is None:
        click.echo("daemon:   never started on this database")
    else:
        ago = f"{int((now - beat).total_seconds())} s ago" if beat else "never"
        state = "running" if alive else ("stopped" if daemon["stopped_at"] else "NOT RESPONDING")
        click.echo(
            f"daemon:   {state} (pid {daemon['pid']} on {daemon['host']}, "
            f"started {daemon['started_at']}, last heartbeat {ago})"
        )
        if alive:
            for name, at in sorted(report["daemon"]["next_runs"].items()):
                click.echo(f"  next {name:<12} {at or '-'}")
            running = daemon.get("model_version")
            if running and file_version and running != file_version:
                # `listener model train` replaced the file: the daemon loads it before its
                # next poll or refine job, unless it does not load (model_reload_failed).
                click.echo(
                    f"  model: it scores with {running}; {model_file} now holds "
                    f"{file_version}, which it loads before its next poll (if it stays, "
                    "its log says why: model_reload_failed)"
                )
        else:
            click.echo("  nothing polls, sends or checks until `listener run` starts again")
    click.echo(
        "feeds:    "
        + ", ".join(f"{n} {state}" for state, n in sorted(health.items()))
        + f" ({counts['feeds']} in all)"
    )
    click.echo(f"items:    {counts['items']} stored")
    click.echo(f"  last 24 h: {_window_line(day)}")
    click.echo(f"  last 7 d:  {_window_line(week)}")
    pending = report["watches"]["backfill_pending"]
    click.echo(
        f"watches:  {len(watches)}"
        + (f", backfill pending: {', '.join(pending)}" if pending else "")
        + (f"; open spikes: {', '.join(report['watches']['open_spikes'])}" if open_spikes else "")
    )
    for name, when in report["next_digests"].items():
        click.echo(f"next digest: {name} at {when}" + ("" if alive else " (once the daemon runs)"))
    for row in digests:
        sent = row["sent_at"] or f"not sent ({row['attempts']} attempts, {row['last_error']})"
        click.echo(
            f"digest:   {row['day']} {row['recipient']}: {sent}"
            + (
                f", {plural(row['item_count'], 'item')}, {row['delivery']}"
                if row["sent_at"]
                else ""
            )
        )


def _next_digest(store: Store, person: Recipient, now: datetime, catch_up_hours: int) -> str:
    """`due now (2026-12-05)` when the latest digest is due and not sent, else when the next
    one goes out, on the recipient's clock."""
    latest = latest_due_period(person, now)
    sent = store.digest_sent_at(person.name, latest.day.isoformat()) is not None
    if is_digest_due(latest, now, already_sent=sent, catch_up=timedelta(hours=catch_up_hours)):
        return f"due now ({latest.day})"
    return describe_send_time(person, next_send_period(person, now))


def _window_counts(store: Store, start: datetime, end: datetime) -> dict[str, int]:
    """The counts a digest of [start, end) reads (new items, per function, uncertain)."""
    totals: dict[str, int] = {}
    for counts in store.feed_label_counts(start, end, ()).values():
        for key, n in counts.items():
            totals[key] = totals.get(key, 0) + n
    return totals


def _window_line(counts: dict[str, int]) -> str:
    """'133 new: marketing 1, …, other 117, uncertain 15': the uncertain ones count in no
    function, so without them the functions would not add up to the new items."""
    functions = ", ".join(f"{k} {counts.get(k, 0)}" for k in LABELS)
    return f"{counts.get(TOTAL, 0)} new: {functions}, uncertain {counts.get(UNCERTAIN, 0)}"


def _daemon_alive(
    daemon: dict[str, Any] | None, beat: datetime | None, now: datetime, heartbeat_s: int
) -> bool:
    if not daemon or daemon["stopped_at"]:
        return False
    return beat is not None and now - beat <= timedelta(seconds=3 * heartbeat_s + 5)


@click.command("digest")
@click.option(
    "--preview",
    "mode",
    flag_value="preview",
    default=True,
    help="Render without sending or claiming anything (the default).",
)
@click.option(
    "--send",
    "mode",
    flag_value="send",
    help="Send the digests that are due now, exactly as the daemon would.",
)
@click.option("--recipient", help="Only this recipient (by name).")
@click.option(
    "--test",
    is_flag=True,
    help="With --send and --recipient: send the last 24 hours now, marked as a test;"
    " the day's real digest still goes out.",
)
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Preview the digest sent on this local date (default: today's).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --preview: also write the HTML part to this file.",
)
@click.pass_obj
@handle_errors
def digest_command(
    obj: Context,
    mode: str,
    recipient: str | None,
    test: bool,
    day: datetime | None,
    out: Path | None,
) -> None:
    """Preview a recipient's digest (text on stdout, HTML with --out), or send due ones.

    `--send --test --recipient NAME` sends NAME the digest of the last 24 hours at once,
    marked as a test, to check the mail setup and see a digest with something in it.
    """
    from listener.jobs.digest import preview_digest, send_due_digests, send_test_digest

    if test and (mode != "send" or recipient is None):
        raise click.UsageError("--test goes with --send and --recipient NAME")

    settings = obj.settings
    recipients = [r for r in settings.recipients if recipient in (None, r.name)]
    if not recipients:
        known = ", ".join(r.name for r in settings.recipients) or "none configured"
        raise click.BadParameter(
            f"no recipient {recipient!r} (known: {known})", param_hint="--recipient"
        )
    now = now_utc()
    with obj.store() as store:
        if test:
            (person,) = recipients
            sent = send_test_digest(store, settings, person, now)
            when = _next_digest(store, person, now, settings.digest.catch_up_hours)
            click.echo(
                f"{sent.recipient}: test digest of the last 24 hours sent,"
                f" {plural(sent.items, 'item')} via {sent.delivery}; the daily digest is"
                f" unaffected (next: {when})"
            )
            return
        if mode == "send":
            chosen = dataclasses.replace(settings, recipients=tuple(recipients))
            by_name = {r.name: r for r in recipients}
            for outcome in send_due_digests(store, chosen, now):
                # A chat channel's outcome is NAME#webhook: its schedule is NAME's.
                person = by_name[outcome.recipient.partition("#")[0]]
                later = ""
                if outcome.status == "skipped" and outcome.reason in ("not_due", "already_sent"):
                    later = f"; next at {describe_send_time(person, next_send_period(person, now))}"
                click.echo(
                    f"{outcome.recipient} {outcome.day}: {outcome.status}"
                    + (f" ({outcome.reason.replace('_', ' ')})" if outcome.reason else "")
                    + (
                        f", {plural(outcome.items, 'item')} via {outcome.delivery}"
                        if outcome.delivery
                        else ""
                    )
                    + later
                )
            return
        for person in recipients:
            local_day = _local_today(person, now) if day is None else day.date()
            at = datetime.combine(local_day, datetime.min.time(), tzinfo=UTC)
            message = preview_digest(store, settings, person, at, now)
            text = message.get_body(preferencelist=("plain",))
            click.echo(f"Subject: {message['Subject']}\nTo: {message['To']}\n")
            click.echo(text.get_content() if text is not None else "")
            if out is not None:
                html = message.get_body(preferencelist=("html",))
                target = out if len(recipients) == 1 else out.with_stem(f"{out.stem}-{person.name}")
                with output_file(target) as html_file:
                    html_file.write(html.get_content() if html is not None else "")
                click.echo(f"wrote {target}", err=True)


def _local_today(recipient: Recipient, now: datetime) -> date:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(recipient.timezone)).date()


@click.group("alerts")
def alerts_group() -> None:
    """Spike alerts: a watch's mentions in the last 24 h far above the days before."""


@alerts_group.command("check")
@click.pass_obj
@handle_errors
def alerts_check(obj: Context) -> None:
    """Check the watches for spikes and send the alerts that are due, exactly as the
    daemon does every [alerts] check_every_minutes (nothing is sent twice)."""
    from listener.jobs.alerts import check_spikes, send_due_alerts

    settings = obj.settings
    now = now_utc()
    with obj.store() as store:
        opened = check_spikes(store, settings, now)
        outcomes = send_due_alerts(store, settings, now)
        watches = store.list_watches()
        since = store.first_fetched_at()
    click.echo(plural(opened, "new spike"))
    until = warm_up_ends_at(since, settings.alerts.rule)
    if watches and since is not None and until is not None and now < until:
        click.echo(
            f"{plural(len(watches), 'watch', 'watches')} in baseline warm-up until"
            f" {until:%Y-%m-%d %H:%M}Z (the {settings.alerts.rule.baseline_days}-day baseline"
            f" reaches back before the first poll, {since:%Y-%m-%d %H:%M}Z, and sees only what"
            " the feeds still listed then)"
        )
    for outcome in outcomes:
        click.echo(
            f"{outcome.watch} ({', '.join(outcome.functions)}) -> {outcome.recipient}: "
            f"{outcome.status}"
            + (f" via {outcome.delivery}" if outcome.delivery else "")
            + (f" ({outcome.reason})" if outcome.reason else "")
        )


@alerts_group.command("list")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="At most this many spikes and alerts.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@click.pass_obj
@handle_errors
def alerts_list(obj: Context, limit: int, as_json: bool) -> None:
    """Recent spike episodes (open ones first) and the alert emails they sent."""
    with obj.store() as store:
        spikes = store.recent_spikes(limit)
        alerts = store.recent_alerts(limit)
    if as_json:
        click.echo(json.dumps({"spikes": spikes, "alerts": alerts}, indent=2, ensure_ascii=False))
        return
    if not spikes:
        click.echo("no spikes yet")
    for spike in spikes:
        state = "OPEN" if spike["ended_at"] is None else f"ended {spike['ended_at']}"
        click.echo(
            f"{spike['started_at']}  {spike['watch']:<16} {spike['function']:<22} "
            f"{spike['count']:>5} in 24 h (usual {spike['baseline_mean']:.1f} ± "
            f"{spike['baseline_sd']:.1f}/day, peak {spike['peak_count']})  {state}"
        )
    for alert in alerts:
        sent = alert["sent_at"] or f"not sent ({alert['attempts']} attempts, {alert['last_error']})"
        click.echo(f"alert:  {alert['opened_at']} {alert['watch']} -> {alert['recipient']}: {sent}")
