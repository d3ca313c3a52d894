"""Wiring of the digest and maintenance jobs; reads like the data-flow diagram:

digest: latest_due_period ─► is_digest_due ─► sending.send_once: claim the (recipient, day)
        row ─► digest data ─► build_digest ─► render_digest ─► deliver (SMTP or outbox)
        ─► mark it sent   (a failed send: the claim released, retried later)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import structlog

from listener.config import Settings
from listener.digest.build import build_digest, is_empty
from listener.digest.model import Digest
from listener.digest.periods import (
    baseline_periods,
    digest_period,
    fit_to_history,
    is_digest_due,
    latest_due_period,
)
from listener.digest.watches import followed_watches, with_watches
from listener.domain import DigestData, DigestItem, DigestPeriod, FeedHealth, Recipient
from listener.feeds.schedule import health_of
from listener.jobs.sending import (
    WEBHOOK_SUFFIX,
    Failed,
    Letter,
    NotClaimed,
    NothingToSend,
    send_once,
)
from listener.mail import deliver
from listener.render.digest import message_id, render_digest, render_digest_summary
from listener.store import Store
from listener.webhook import post_webhook

if TYPE_CHECKING:
    from listener.jobs.services import Services

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DigestOutcome:
    recipient: str
    day: str
    status: str  # sent | skipped | failed
    reason: str | None = None
    items: int = 0
    delivery: str | None = None


class PeriodReads:
    """The period reads of one digest job run, each done once: recipients in one time zone
    following the same feeds (and a recipient's webhook summary after its email) share the
    period's items and the baseline days' label counts, ~0.5 s of a digest at a million
    items. Made per run, so a later run reads afresh."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._items: dict[tuple[datetime, datetime, tuple[str, ...]], list[DigestItem]] = {}
        self._counts: dict[tuple[datetime, datetime, tuple[str, ...]], dict[str, int]] = {}
        self._history: dict[tuple[str, ...], datetime | None] = {}

    def history_since(self, tags: tuple[str, ...] = ()) -> datetime | None:
        """Since when the feeds with one of `tags` (every feed when empty) have been listened
        to: the first stored item, or the first of those feeds to be added when that is later
        (a recipient following feeds added a month after the install)."""
        if tags not in self._history:
            since = self.store.first_fetched_at()
            added = self.store.first_added_at(tags) if tags and since else None
            self._history[tags] = max(since, added) if since and added else since
        return self._history[tags]

    def digest_items(
        self, start: datetime, end: datetime, tags: tuple[str, ...]
    ) -> list[DigestItem]:
        key = (start, end, tags)
        if key not in self._items:
            self._items[key] = self.store.digest_items(start, end, tags)
        return self._items[key]

    def label_counts(self, start: datetime, end: datetime, tags: tuple[str, ...]) -> dict[str, int]:
        key = (start, end, tags)
        if key not in self._counts:
            self._counts[key] = self.store.label_counts(start, end, tags)
        return self._counts[key]


def digest_data(
    store: Store,
    settings: Settings,
    recipient: Recipient,
    period: DigestPeriod,
    now: datetime,
    reads: PeriodReads | None = None,
) -> DigestData:
    """Everything build_digest needs: the period's items, the baseline days before, feed
    health. `reads` shares the period reads between the digests of one job run."""
    reads = reads or PeriodReads(store)
    items = reads.digest_items(period.starts_at, period.ends_at, recipient.tags)
    watches = followed_watches(recipient, [row.watch() for row in store.list_watches()])
    per_day, watch_per_day = [], []
    for earlier in baseline_periods(recipient, period, reads.history_since(recipient.tags)):
        per_day.append(reads.label_counts(earlier.starts_at, earlier.ends_at, recipient.tags))
        if watches:
            watch_per_day.append(
                store.period_mention_counts(earlier.starts_at, earlier.ends_at, recipient.tags)
            )
    labels = {label for counts in per_day for label in counts}
    daily_counts = {label: tuple(counts.get(label, 0) for counts in per_day) for label in labels}
    unhealthy = []
    for row in store.list_feeds(with_item_count=False):
        if recipient.tags and not set(recipient.tags) & set(row.tags):
            continue
        state = health_of(row, now, settings.poll.silent_after_days)
        if state != "ok" and not state.startswith("new"):
            unhealthy.append(FeedHealth(url=row.url, title=row.title, state=state))
    mentions = (
        store.period_mentions(period.starts_at, period.ends_at, recipient.tags) if watches else {}
    )
    return DigestData(
        items=tuple(items),
        daily_counts=daily_counts,
        unhealthy_feeds=tuple(unhealthy),
        watches=watches,
        mentions=mentions,
        watch_daily_counts={
            w.name: tuple(counts.get(w.name, 0) for counts in watch_per_day) for w in watches
        },
        baseline_days=len(per_day),
    )


def make_digest(recipient: Recipient, period: DigestPeriod, data: DigestData) -> Digest:
    """The digest of one recipient and period, its watch sections included."""
    return with_watches(build_digest(recipient, period, data), data)


def preview_digest(
    store: Store, settings: Settings, recipient: Recipient, day: datetime, now: datetime
) -> EmailMessage:
    """The digest of `recipient` for the local date of `day`, rendered; nothing is claimed."""
    period = digest_period(recipient, day.date())
    digest = make_digest(recipient, period, digest_data(store, settings, recipient, period, now))
    return render_digest(
        digest,
        sender=settings.digest.sender,
        generated_at=now,
        message_domain=settings.digest.message_domain,
        settings_file=settings.source,
    )


TEST_WINDOW = timedelta(hours=24)


def send_test_digest(
    store: Store, settings: Settings, recipient: Recipient, now: datetime
) -> DigestOutcome:
    """The digest of the last 24 hours, marked as a test ("[test]" in the subject, its own
    Message-ID), delivered now. Nothing is claimed: the day's real digest still goes out.
    A MailError propagates: the person who asked sees why."""
    day = now.astimezone(ZoneInfo(recipient.timezone)).date()
    period = DigestPeriod(
        recipient=recipient.name, day=day, starts_at=now - TEST_WINDOW, ends_at=now, send_at=now
    )
    digest = make_digest(recipient, period, digest_data(store, settings, recipient, period, now))
    message = render_digest(
        digest,
        sender=settings.digest.sender,
        generated_at=now,
        message_domain=settings.digest.message_domain,
        settings_file=settings.source,
    )
    subject = str(message["Subject"])
    message.replace_header("Subject", f"[test] {subject}")
    message.replace_header("Message-ID", make_msgid("digest-test", settings.digest.message_domain))
    message["X-Listener-Test"] = "yes"
    outbox_name = f"test-{now:%Y%m%dT%H%M%S}-{recipient.name}"
    delivery = deliver(message, settings.smtp, Path(settings.digest.outbox), outbox_name)
    log.info("digest_sent", test=True, items=digest.total_items, delivery=delivery)
    return DigestOutcome(
        recipient.name, day.isoformat(), "sent", "test", digest.total_items, delivery
    )


def send_due_digests(store: Store, settings: Settings, now: datetime) -> list[DigestOutcome]:
    """Send every recipient's due digest exactly once (claim, send, mark; release on error)."""
    outcomes = []
    reads = PeriodReads(store)
    history_since = reads.history_since()
    for recipient in settings.recipients:
        period = latest_due_period(recipient, now)
        day = period.day.isoformat()
        period = fit_to_history(
            period,
            history_since=history_since,
            previous_end=store.last_digest_end(recipient.name, day),
            now=now,
        )
        with structlog.contextvars.bound_contextvars(recipient=recipient.name, day=day):
            outcome = _send_one(store, settings, recipient, period, day, now, reads)
        outcomes.append(outcome)
        if recipient.webhook_digest and recipient.webhook_url:
            # Its own exactly-once row (`NAME#webhook`), like a spike alert's chat message.
            channel = f"{recipient.name}{WEBHOOK_SUFFIX}"
            with structlog.contextvars.bound_contextvars(recipient=channel, day=day):
                outcomes.append(
                    _send_one(store, settings, recipient, period, day, now, reads, webhook=True)
                )
    return outcomes


def _send_one(
    store: Store,
    settings: Settings,
    recipient: Recipient,
    period: DigestPeriod,
    day: str,
    now: datetime,
    reads: PeriodReads,
    *,
    webhook: bool = False,
) -> DigestOutcome:
    """The digest to one recipient by email, or (`webhook`) its one-paragraph summary to the
    recipient's chat webhook, each channel claimed, sent and marked once."""
    channel = f"{recipient.name}{WEBHOOK_SUFFIX}" if webhook else recipient.name
    catch_up = timedelta(hours=settings.digest.catch_up_hours)
    sent = store.digest_sent_at(channel, day) is not None
    if not is_digest_due(period, now, already_sent=sent, catch_up=catch_up):
        reason = "already_sent" if sent else "not_due"
        log.debug("digest_skipped", reason=reason)
        return DigestOutcome(channel, day, "skipped", reason)

    def compose() -> Letter | None:
        data = digest_data(store, settings, recipient, period, now, reads)
        digest = make_digest(recipient, period, data)
        if is_empty(digest) and not recipient.send_when_empty:
            return None
        digest_id = message_id(digest, settings.digest.message_domain)
        if webhook:
            summary = render_digest_summary(digest)
            return Letter(summary, digest_id, f"{day}-{channel}", digest.total_items)
        message = render_digest(
            digest,
            sender=settings.digest.sender,
            generated_at=now,
            message_domain=settings.digest.message_domain,
            settings_file=settings.source,
        )
        return Letter(message, digest_id, f"{day}-{recipient.name}", digest.total_items)

    def to_webhook(letter: Letter) -> str:
        return post_webhook(letter.message, recipient.webhook_url, recipient.webhook_format)

    outcome = send_once(
        _DigestRow(store, channel, day, period),
        compose,
        settings,
        now,
        deliver_letter=to_webhook if webhook else None,
    )
    if isinstance(outcome, NotClaimed):
        log.info("digest_skipped", reason="claimed_or_waiting_retry")
        return DigestOutcome(channel, day, "skipped", "claimed_or_waiting_retry")
    if isinstance(outcome, NothingToSend):
        log.info("digest_skipped", reason="empty")
        return DigestOutcome(channel, day, "skipped", "empty")
    if isinstance(outcome, Failed):
        log.warning(
            "digest_failed",
            error=outcome.error,
            attempts=outcome.attempts,
            retry_at=outcome.retry_at.isoformat(),
        )
        return DigestOutcome(channel, day, "failed", outcome.error)
    items = outcome.letter.items
    log.info("digest_sent", items=items, delivery=outcome.delivery)
    return DigestOutcome(channel, day, "sent", None, items, outcome.delivery)


@dataclass(frozen=True, slots=True)
class _DigestRow:
    """The digests row of (recipient, day), as sending.send_once moves it."""

    store: Store
    recipient: str
    day: str
    period: DigestPeriod

    def claim(self, *, now: datetime, stale_before: datetime) -> str | None:
        period = (self.period.starts_at, self.period.ends_at)
        return self.store.claim_digest(
            self.recipient, self.day, period=period, now=now, stale_before=stale_before
        )

    def mark_sent(
        self, claim_id: str, letter: Letter | None, *, now: datetime, delivery: str
    ) -> None:
        self.store.mark_digest_sent(
            self.recipient,
            self.day,
            claim_id,
            now=now,
            item_count=letter.items if letter else 0,
            message_id=letter.message_id if letter else None,
            delivery=delivery,
        )

    def release(self, claim_id: str, *, error: str, retry_at: datetime) -> None:
        self.store.release_digest(
            self.recipient, self.day, claim_id, error=error, retry_at=retry_at
        )

    def attempts(self) -> int:
        return self.store.digest_attempts(self.recipient, self.day)


def run_maintenance(store: Store, settings: Settings, now: datetime) -> dict[str, int]:
    """Daily: drop old polls rows, optimise the FTS index and the planner statistics."""
    before = now - timedelta(days=settings.daemon.keep_polls_days)
    result = store.run_maintenance(polls_before=before)
    log.info("maintenance_done", **result)
    return result


def digest_job(services: Services, now: datetime) -> list[DigestOutcome]:
    """The daemon's digest job: every recipient's due digest, once."""
    return send_due_digests(services.store, services.settings, now)


def maintenance_job(services: Services, now: datetime) -> dict[str, int]:
    """The daemon's daily maintenance."""
    return run_maintenance(services.store, services.settings, now)
