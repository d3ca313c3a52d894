from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from listener.domain import PollPolicy
from listener.feeds.schedule import (
    cache_lifetime,
    feed_health,
    next_poll_after_failure,
    next_poll_after_success,
    parse_http_delay,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = PollPolicy(
    interval_minutes=60, jitter_fraction=0.1, max_interval_minutes=1440, max_backoff_minutes=720
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"cache-control": "public, max-age=7200"}, timedelta(hours=2)),
        ({"cache-control": "s-maxage=10, max-age=600"}, timedelta(minutes=10)),
        ({"cache-control": "no-cache, max-age=600"}, None),
        ({"expires": "Sun, 01 Mar 2026 15:00:00 GMT"}, timedelta(hours=3)),
        ({"expires": "0"}, timedelta(0)),
        ({"expires": "garbage"}, None),
    ],
)
def test_cache_lifetime(headers: dict[str, str], expected: timedelta | None) -> None:
    assert cache_lifetime(headers, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", timedelta(seconds=120)),
        ("Sun, 01 Mar 2026 12:30:00 GMT", timedelta(minutes=30)),
        ("Sun, 01 Mar 2026 11:00:00 GMT", timedelta(0)),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_http_delay(value: str | None, expected: timedelta | None) -> None:
    assert parse_http_delay(value, NOW) == expected


@pytest.mark.parametrize(
    ("rand", "interval", "headers", "expected_minutes"),
    [
        (0.5, None, {}, 60),
        (0.0, None, {}, 54),
        (1.0, None, {}, 66),
        (0.5, 15, {}, 15),
        (0.5, None, {"cache-control": "max-age=10800"}, 180),  # a lower bound…
        (0.5, None, {"cache-control": "max-age=999999"}, 1440),  # …that is capped
        (0.5, None, {"cache-control": "max-age=60"}, 60),  # shorter than the interval: ignored
    ],
)
def test_next_poll_after_success(
    rand: float, interval: int | None, headers: dict[str, str], expected_minutes: float
) -> None:
    due = next_poll_after_success(NOW, POLICY, interval, headers, rand)
    assert due - NOW == timedelta(minutes=expected_minutes)


@pytest.mark.parametrize(
    ("errors", "retry_after", "expected_minutes"),
    [
        (1, None, 60),
        (2, None, 120),
        (3, None, 240),
        (5, None, 720),  # capped at max_backoff_minutes
        (400, None, 720),
        (1, "7200", 120),  # Retry-After longer than the back-off wins
        (3, "60", 240),  # shorter one does not shorten it
        (1, "999999", 720),  # and it is capped too
    ],
)
def test_next_poll_after_failure_backs_off(
    errors: int, retry_after: str | None, expected_minutes: int
) -> None:
    due = next_poll_after_failure(NOW, POLICY, None, errors, retry_after, 0.5)
    assert due - NOW == timedelta(minutes=expected_minutes)


def _health(**overrides: object) -> str:
    args: dict[str, object] = {
        "now": NOW,
        "last_status": "ok",
        "error_count": 0,
        "failing_since": None,
        "gone_at": None,
        "last_new_item_at": NOW - timedelta(days=1),
        "added_at": NOW - timedelta(days=30),
        "silent_after_days": 7,
    }
    args.update(overrides)
    return feed_health(**args)  # type: ignore[arg-type]


def test_feed_health_states() -> None:
    assert _health() == "ok"
    assert _health(last_status=None) == "new (not polled yet)"
    assert _health(gone_at=NOW) == "gone since 2026-03-01"
    assert _health(error_count=3, failing_since=NOW - timedelta(hours=5)) == (
        "failing since 2026-03-01 07:00Z (3 errors)"
    )
    assert _health(last_new_item_at=NOW - timedelta(days=9)) == "silent for 9 days"
    assert _health(last_new_item_at=None) == "silent for 30 days"
