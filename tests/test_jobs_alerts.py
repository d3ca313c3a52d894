"""The alert job against a real store and SMTP server: which spikes open, who gets them,
retries after a failed send, and what never alerts (a new feed's archive, a watch whose
backfill is pending)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from listener.config import Settings, parse_settings
from listener.domain import Item, PollResult, Watch
from listener.jobs.alerts import check_spikes, run_alerts, send_due_alerts
from listener.jobs.watches import match_poll_items, poll_matcher
from listener.store import Store, open_store
from tests.polls import apply_poll
from tests.smtp import SmtpServer

T0 = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
ACME = Watch("acme", "acme", kind="brand")


def settings_for(smtp: SmtpServer, tmp_path: Path, **alerts: object) -> Settings:
    return parse_settings(
        {
            "smtp": {"host": smtp.host, "port": smtp.port, "security": "none", "retries": 0},
            "digest": {"outbox": str(tmp_path / "outbox")},
            "alerts": {"min_count": 5, **alerts},
            "recipients": [
                {"name": "brand", "email": "brand@example.com", "watches": ["acme"]},
                {"name": "all", "email": "all@example.com"},
                {"name": "off", "email": "off@example.com", "alerts": False},
                {"name": "rivals", "email": "rivals@example.com", "watches": ["globex"]},
            ],
        },
        {},
    )


@pytest.fixture
def store(db_path: Path) -> Store:
    store = open_store(db_path)
    store.add_feed("https://old.example/feed", now=T0 - timedelta(days=30))
    store.save_watch(ACME, origin="cli", now=T0 - timedelta(days=30))
    return store


def add_items(
    store: Store, feed_id: int, published: list[datetime], tag: str, polled_at: datetime = T0
) -> None:
    items = [
        Item(
            feed_id=feed_id,
            key=f"{tag}-{n}",
            guid=None,
            url=f"https://news.example/{tag}/{n}",
            title=f"Acme story {tag} number {n} of the week",
            summary="",
            author=None,
            published_at=at,
            published_raw=None,
            lang="en",
            content_hash=f"{tag}{n}",
        )
        for n, at in enumerate(published)
    ]
    result = PollResult(feed_id=feed_id, url="u", status="ok", started_at=polled_at, duration_ms=1)
    apply_poll(store, result, items, mentions=match_poll_items(poll_matcher(store), items, ()))


def quiet_week(store: Store, feed_id: int = 1) -> None:
    add_items(store, feed_id, [T0 - timedelta(days=d, hours=5) for d in range(1, 9)], "q")


def burst(store: Store, count: int = 8, feed_id: int = 1, tag: str = "b") -> None:
    add_items(store, feed_id, [T0 - timedelta(hours=1, minutes=n) for n in range(count)], tag)


def test_a_burst_alerts_every_follower_once(store: Store, smtp: SmtpServer, tmp_path: Path) -> None:
    settings = settings_for(smtp, tmp_path)
    quiet_week(store)
    burst(store)
    outcomes = run_alerts(store, settings, T0)
    assert sorted((o.recipient, o.status) for o in outcomes) == [("all", "sent"), ("brand", "sent")]
    assert outcomes[0].functions == ("all",)
    assert sorted(m.rcpt_tos[0] for m in smtp.inbox.messages) == [
        "all@example.com",
        "brand@example.com",
    ]
    assert run_alerts(store, settings, T0 + timedelta(minutes=30)) == []
    assert len(smtp.inbox.messages) == 2


def test_a_failed_send_is_retried_after_the_back_off_and_sent_once(
    store: Store, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        settings_for(smtp, tmp_path),
        recipients=settings_for(smtp, tmp_path).recipients[:1],
    )
    quiet_week(store)
    burst(store)
    smtp.inbox.refuse_next(1, "451 4.3.0 try again later")
    (failed,) = run_alerts(store, settings, T0)
    assert failed.status == "failed"
    assert send_due_alerts(store, settings, T0 + timedelta(minutes=2)) == []  # backing off
    (sent,) = send_due_alerts(store, settings, T0 + timedelta(minutes=6))
    assert sent.status == "sent"
    assert len(smtp.inbox.messages) == 1
    (row,) = store.recent_alerts()
    assert row["attempts"] == 2


def test_a_spike_that_ends_and_comes_back_alerts_again(
    store: Store, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(smtp, tmp_path)
    quiet_week(store)
    burst(store)
    assert check_spikes(store, settings, T0) == 1
    assert check_spikes(store, settings, T0 + timedelta(days=1)) == 0  # back to normal: closed
    assert store.open_spikes() == {}
    later = T0 + timedelta(days=2)
    add_items(store, 1, [later - timedelta(hours=1, minutes=n) for n in range(30)], "x", later)
    assert check_spikes(store, settings, T0 + timedelta(days=2)) == 1
    assert len(store.recent_spikes()) == 2


def test_a_new_feeds_archive_is_not_a_spike(store: Store, smtp: SmtpServer, tmp_path: Path) -> None:
    settings = settings_for(smtp, tmp_path)
    store.add_feed("https://new.example/feed", now=T0 - timedelta(hours=3))
    burst(store, count=20, feed_id=2)
    assert check_spikes(store, settings, T0) == 0


def test_a_watch_whose_backfill_is_pending_is_not_checked(
    store: Store, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(smtp, tmp_path)
    quiet_week(store)
    burst(store)
    store.save_watch(Watch("acme", "acme OR acmé"), origin="cli", now=T0)  # changed: cursor 0
    assert check_spikes(store, settings, T0) == 0


def test_alerts_can_be_switched_off(store: Store, smtp: SmtpServer, tmp_path: Path) -> None:
    settings = settings_for(smtp, tmp_path, enabled=False)
    quiet_week(store)
    burst(store)
    assert run_alerts(store, settings, T0) == []
    assert store.recent_spikes() == []
