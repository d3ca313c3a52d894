"""Wiring of the spike alerts; reads like the data-flow diagram:

check: store.list_watches (caught-up ones) ─► store.watch_mentions + effective_labels
       ─► spikes.daily_counts ─► assess ─► plan_episodes ─► store.record_spikes
send:  store.open_spikes ─► per (watch, check) and follower, sending.send_once: claim the
       alert's row ─► spike_alert ─► render_alert ─► deliver ─► mark it sent (a failed
       send: the claim released, retried later), so each alert goes out once across restarts
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from listener.config import Settings
from listener.digest.build import group_stories
from listener.domain import (
    ALL_FUNCTIONS,
    Mention,
    NewSpike,
    Recipient,
    SpikeRow,
    SpikeRule,
    WatchRow,
)
from listener.jobs.sending import (
    WEBHOOK_SUFFIX,
    Failed,
    Letter,
    NotClaimed,
    NothingToSend,
    send_once,
)
from listener.render.alert import alert_message_id, render_alert
from listener.store import Store
from listener.webhook import post_webhook

if TYPE_CHECKING:
    from listener.jobs.services import Services
from listener.watches.spikes import (
    DAY,
    FUNCTIONS,
    OpenEpisode,
    SpikeAlert,
    Volume,
    assess,
    check_time,
    daily_counts,
    plan_episodes,
    term_trends,
    top_items,
    window_start,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    recipient: str
    watch: str
    opened_at: datetime
    status: str  # sent | failed
    functions: tuple[str, ...]
    reason: str | None = None
    delivery: str | None = None


def check_spikes(store: Store, settings: Settings, now: datetime) -> int:
    """Open, update and close spike episodes for the last full hour; the episodes opened.
    Idempotent within the hour. Watches whose backfill is pending are skipped: their
    counts would be too low."""
    check_at = check_time(now)
    rule = settings.alerts.rule
    newest = store.max_item_id()
    volumes: dict[tuple[int, str], Volume] = {}
    names = {}
    for row in store.list_watches():
        if row.matched_through < newest:
            log.info("spike_check_skipped", watch=row.name, reason="backfill_pending")
            continue
        names[row.id] = row.name
        mentions = _mentions(store, row.id, check_at, rule)
        labels = store.effective_labels([m.item_id for m in mentions])
        counts = daily_counts(
            ((m.mentioned_at, labels.get(m.item_id, ())) for m in mentions), check_at, rule
        )
        for function in FUNCTIONS:
            volumes[(row.id, function)] = assess(counts[function], rule)
    episodes = store.open_spikes()
    plan = plan_episodes(
        volumes,
        {key: OpenEpisode(row.baseline_mean, row.baseline_sd) for key, row in episodes.items()},
        rule,
    )
    opened = store.record_spikes(
        opened=[
            NewSpike(watch_id, function, v.count, v.mean, v.sd, v.threshold)
            for (watch_id, function), v in plan.opened
        ],
        updated={episodes[key].id: count for key, count in plan.updated},
        closed=[episodes[key].id for key in plan.closed],
        now=check_at,
    )
    for (watch_id, function), volume in plan.opened:
        log.info(
            "spike_opened",
            watch=names[watch_id],
            function=function,
            count=volume.count,
            mean=round(volume.mean, 2),
            sd=round(volume.sd, 2),
            threshold=round(volume.threshold, 2),
        )
    for watch_id, function in plan.closed:
        log.info("spike_closed", watch=names[watch_id], function=function)
    return opened


def send_due_alerts(store: Store, settings: Settings, now: datetime) -> list[AlertOutcome]:
    """Send each open episode group (a watch's functions opened by one check) to every
    recipient following the watch, once. Episodes older than the digest's catch-up window
    are not alerted late."""
    oldest = now - timedelta(hours=settings.digest.catch_up_hours)
    groups: dict[tuple[int, datetime], list[SpikeRow]] = {}
    for episode in store.open_spikes().values():
        if episode.started_at >= oldest:
            groups.setdefault((episode.watch_id, episode.started_at), []).append(episode)
    watches = {row.id: row for row in store.list_watches()}
    outcomes = []
    for (watch_id, opened_at), episodes in sorted(groups.items(), key=lambda g: g[0][1]):
        row = watches.get(watch_id)
        if row is None:
            continue  # removed since the spikes were read
        for recipient in _followers(settings.recipients, row.name):
            with structlog.contextvars.bound_contextvars(
                recipient=recipient.name,
                watch=row.name,
                opened_at=f"{opened_at:%Y-%m-%dT%H:%M:%SZ}",
            ):
                outcome = _send_one(store, settings, recipient, row, opened_at, episodes, now)
                if outcome is not None:
                    outcomes.append(outcome)
                if recipient.webhook_url:
                    outcome = _send_one(
                        store, settings, recipient, row, opened_at, episodes, now, webhook=True
                    )
                    if outcome is not None:
                        outcomes.append(outcome)
    return outcomes


def run_alerts(store: Store, settings: Settings, now: datetime) -> list[AlertOutcome]:
    """The hourly job: check for spikes, then send what is due."""
    if not settings.alerts.enabled:
        return []
    check_spikes(store, settings, now)
    return send_due_alerts(store, settings, now)


def alerts_job(services: Services, now: datetime) -> list[AlertOutcome]:
    """The daemon's alerts job (run_alerts)."""
    return run_alerts(services.store, services.settings, now)


def spike_alert(
    store: Store,
    settings: Settings,
    row: WatchRow,
    opened_at: datetime,
    episodes: Sequence[SpikeRow],
) -> SpikeAlert:
    """What one alert shows: the functions that spiked, the terms and the top items of the
    24 hours before the check that opened them."""
    rule = settings.alerts.rule
    order = {function: index for index, function in enumerate(FUNCTIONS)}
    functions = tuple(
        (e.function, Volume(e.count, e.baseline_mean, e.baseline_sd, _threshold(e, rule)))
        for e in sorted(episodes, key=lambda e: order.get(e.function, 99))
    )
    mentions = _mentions(store, row.id, opened_at, rule)
    start = opened_at - DAY
    recent = {m.item_id: m.terms for m in mentions if m.mentioned_at >= start}
    items = store.digest_items_by_id(sorted(recent))
    spiked = {function for function, _ in functions}
    if ALL_FUNCTIONS not in spiked:
        items = [i for i in items if not i.uncertain and spiked & set(i.labels)]
    stories = [(s.lead, recent[s.lead.item_id], len(s.others)) for s in group_stories(items)]
    return SpikeAlert(
        watch=row.watch(),
        opened_at=opened_at,
        window_start=start,
        functions=functions,
        terms=term_trends(((m.mentioned_at, m.terms) for m in mentions), opened_at, rule),
        items=top_items(stories, settings.alerts.top_items),
        min_count=rule.min_count,
    )


def _send_one(
    store: Store,
    settings: Settings,
    recipient: Recipient,
    row: WatchRow,
    opened_at: datetime,
    episodes: Sequence[SpikeRow],
    now: datetime,
    *,
    webhook: bool = False,
) -> AlertOutcome | None:
    """The alert to one recipient by email, or (`webhook`) to its chat webhook: each channel
    has its own exactly-once row (the webhook's recipient is `NAME#webhook`)."""
    functions = tuple(e.function for e in episodes)
    channel = f"{recipient.name}{WEBHOOK_SUFFIX}" if webhook else recipient.name

    def compose() -> Letter:
        alert = spike_alert(store, settings, row, opened_at, episodes)
        message = render_alert(
            alert,
            recipient,
            sender=settings.digest.sender,
            generated_at=now,
            message_domain=settings.digest.message_domain,
            settings_file=settings.source,
        )
        alert_id = alert_message_id(alert, recipient, settings.digest.message_domain)
        name = f"alert-{opened_at:%Y-%m-%dT%H}-{row.name}-{recipient.name}"
        return Letter(message, alert_id, name)

    def to_webhook(letter: Letter) -> str:
        return post_webhook(letter.message, recipient.webhook_url, recipient.webhook_format)

    alert_row = _AlertRow(store, channel, row.id, opened_at, functions)
    outcome = send_once(
        alert_row, compose, settings, now, deliver_letter=to_webhook if webhook else None
    )
    if isinstance(outcome, NotClaimed | NothingToSend):
        log.debug("alert_skipped", reason="sent_claimed_or_waiting_retry", channel=channel)
        return None
    if isinstance(outcome, Failed):
        log.warning("alert_failed", error=outcome.error, attempts=outcome.attempts, channel=channel)
        return AlertOutcome(channel, row.name, opened_at, "failed", functions, outcome.error)
    log.info("alert_sent", functions=list(functions), delivery=outcome.delivery, channel=channel)
    return AlertOutcome(channel, row.name, opened_at, "sent", functions, None, outcome.delivery)


@dataclass(frozen=True, slots=True)
class _AlertRow:
    """The alerts row of (recipient, watch, opened at), as sending.send_once moves it."""

    store: Store
    recipient: str
    watch_id: int
    opened_at: datetime
    functions: tuple[str, ...]

    def claim(self, *, now: datetime, stale_before: datetime) -> str | None:
        return self.store.claim_alert(
            self.recipient,
            self.watch_id,
            self.opened_at,
            self.functions,
            now=now,
            stale_before=stale_before,
        )

    def mark_sent(
        self, claim_id: str, letter: Letter | None, *, now: datetime, delivery: str
    ) -> None:
        self.store.mark_alert_sent(
            self.recipient,
            self.watch_id,
            self.opened_at,
            claim_id,
            now=now,
            message_id=letter.message_id if letter else None,
            delivery=delivery,
        )

    def release(self, claim_id: str, *, error: str, retry_at: datetime) -> None:
        self.store.release_alert(
            self.recipient, self.watch_id, self.opened_at, claim_id, error=error, retry_at=retry_at
        )

    def attempts(self) -> int:
        return self.store.alert_attempts(self.recipient, self.watch_id, self.opened_at)


def _mentions(store: Store, watch_id: int, check_at: datetime, rule: SpikeRule) -> list[Mention]:
    # Feeds added within the window would count their archive as a burst: left out until
    # they have been polled for the whole baseline.
    start = window_start(check_at, rule)
    return store.watch_mentions(watch_id, start, check_at, settled_before=start)


def _followers(recipients: Sequence[Recipient], watch: str) -> list[Recipient]:
    return [r for r in recipients if r.alerts and (not r.watches or watch in r.watches)]


def _threshold(episode: SpikeRow, rule: SpikeRule) -> float:
    return episode.baseline_mean + rule.threshold_sd * episode.baseline_sd
