"""Pure: when to poll a feed next, and how healthy a feed looks.

Polite polling: the feed's interval with jitter; Cache-Control max-age / Expires as a lower
bound; exponential back-off on errors; Retry-After on 429/503; everything capped so a feed is
never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from listener.domain import FeedRow, PollPolicy, PollResult

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def parse_http_delay(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After or Expires: seconds or an HTTP-date, as a delay from `now` (never negative)."""
    if value and value.strip().isdigit():
        return timedelta(seconds=int(value))
    when = parse_http_date(value)
    return None if when is None else max(when - now, timedelta(0))


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date header (Expires, Last-Modified) in UTC; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    # HTTP-dates are GMT by definition.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def cache_lifetime(headers: Mapping[str, str], now: datetime) -> timedelta | None:
    """How long the server says the response stays fresh (max-age wins over Expires)."""
    control = headers.get("cache-control", "")
    if "no-store" in control.lower() or "no-cache" in control.lower():
        return None
    match = _MAX_AGE.search(control)
    if match:
        return timedelta(seconds=int(match.group(1)))
    return parse_http_delay(headers.get("expires"), now)


def next_poll_after_success(
    now: datetime,
    policy: PollPolicy,
    interval_minutes: int | None,
    headers: Mapping[str, str],
    rand: float,
) -> datetime:
    """Interval ± jitter, not earlier than the cache lifetime, never later than the cap."""
    interval = timedelta(minutes=interval_minutes or policy.interval_minutes)
    delay = interval * (1 + policy.jitter_fraction * (2 * rand - 1))
    lifetime = cache_lifetime(headers, now)
    if lifetime is not None and lifetime > delay:
        delay = lifetime
    return now + min(delay, timedelta(minutes=policy.max_interval_minutes))


def next_poll_after_failure(
    now: datetime,
    policy: PollPolicy,
    interval_minutes: int | None,
    error_count: int,
    retry_after: str | None,
    rand: float,
) -> datetime:
    """Exponential back-off from the feed's interval, at least Retry-After, capped."""
    interval = timedelta(minutes=interval_minutes or policy.interval_minutes)
    cap = timedelta(minutes=policy.max_backoff_minutes)
    exponent = min(max(error_count - 1, 0), 16)  # bounded: 2**16 intervals is far past any cap
    delay = min(interval * (1 << exponent), cap)
    delay = delay * (1 + policy.jitter_fraction * (2 * rand - 1))
    requested = parse_http_delay(retry_after, now)
    if requested is not None and requested > delay:
        delay = requested
    return now + min(delay, cap)


def feed_health(
    *,
    now: datetime,
    last_status: str | None,
    error_count: int,
    failing_since: datetime | None,
    gone_at: datetime | None,
    last_new_item_at: datetime | None,
    added_at: datetime,
    silent_after_days: int,
) -> str:
    """One phrase for `feeds list` and the digest: ok, new, gone, failing since…, silent for…."""
    if gone_at is not None:
        return f"gone since {gone_at:%Y-%m-%d}"
    if error_count > 0 and failing_since is not None:
        errors = "1 error" if error_count == 1 else f"{error_count} errors"
        return f"failing since {failing_since:%Y-%m-%d %H:%M}Z ({errors})"
    if last_status is None:
        return "new (not polled yet)"
    reference = last_new_item_at or added_at
    silent_days = (now - reference).days
    if silent_days >= silent_after_days:
        return f"silent for {silent_days} days"
    return "ok"


# How fetch reports that the network, not the feed, failed (FetchError kinds dns, connect).
_NETWORK_ERRORS = ("DNS lookup failed", "cannot connect")


def is_network_down(results: Sequence[PollResult]) -> bool:
    """Every feed of a poll (two or more) failed to resolve or connect: more likely this
    machine's network than all the feeds at once."""
    return len(results) >= 2 and all(
        result.status == "failed" and (result.error or "").startswith(_NETWORK_ERRORS)
        for result in results
    )


def health_of(feed: FeedRow, now: datetime, silent_after_days: int) -> str:
    """feed_health of a stored feed."""
    return feed_health(
        now=now,
        last_status=feed.last_status,
        error_count=feed.error_count,
        failing_since=feed.failing_since,
        gone_at=feed.gone_at,
        last_new_item_at=feed.last_new_item_at,
        added_at=feed.added_at,
        silent_after_days=silent_after_days,
    )
