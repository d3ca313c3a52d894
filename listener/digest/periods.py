"""Pure: when each recipient's daily digest is due, and the local day it covers.

Periods are computed with zoneinfo in the recipient's zone (local days are 23 or 25 hours
long across DST); everything handed back is aware UTC.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from listener.domain import BASELINE_DAYS, DigestPeriod, Recipient

_SEND_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


def parse_send_time(text: str) -> time:
    """'07:30' -> time(7, 30); ValueError unless it is H:MM or HH:MM on a 24-hour clock."""
    match = _SEND_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a time as HH:MM (00:00-23:59), got {text!r}")
    return time(int(match.group(1)), int(match.group(2)))


def digest_period(recipient: Recipient, day: date) -> DigestPeriod:
    """The period of the digest sent on local `day`: the local day before, in UTC."""
    zone = ZoneInfo(recipient.timezone)
    send_time = parse_send_time(recipient.send_at)
    return DigestPeriod(
        recipient=recipient.name,
        day=day,
        starts_at=_local_to_utc(day - timedelta(days=1), time(0), zone),
        ends_at=_local_to_utc(day, time(0), zone),
        send_at=_local_to_utc(day, send_time, zone),
    )


def latest_due_period(recipient: Recipient, now: datetime) -> DigestPeriod:
    """The period whose send time is the latest one at or before `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    today = now.astimezone(ZoneInfo(recipient.timezone)).date()
    period = digest_period(recipient, today)
    if period.send_at <= now:
        return period
    return digest_period(recipient, today - timedelta(days=1))


def fit_to_history(
    period: DigestPeriod,
    *,
    history_since: datetime | None,
    previous_end: datetime | None,
    now: datetime,
) -> DigestPeriod:
    """The period a digest really covers, given what is stored.

    A recipient's first digest whose day ended before anything was stored (a new install:
    "yesterday" is empty by construction) covers what was stored since the first poll, up
    to `now` (rounded up to a whole second, the stored times' precision), instead. And a
    digest never covers again what the previous one did: it starts where that one ended, when
    that is later than its own start (the day after such a first digest).
    """
    if previous_end is None and history_since is not None and period.ends_at <= history_since < now:
        # Up to the next whole second: stored times have whole seconds, and a daemon's first
        # digest runs right after its first poll, whose items carry this very second.
        return replace(period, ends_at=_next_whole_second(now))
    if previous_end is not None and period.starts_at < previous_end:
        return replace(period, starts_at=min(previous_end, period.ends_at))
    return period


def baseline_periods(
    recipient: Recipient, period: DigestPeriod, history_since: datetime | None
) -> list[DigestPeriod]:
    """The local days a digest's counts are compared with, oldest first: the BASELINE_DAYS
    days before its own, less those that began before `history_since` (since when listener
    has listened to the recipient's feeds). A day before it had nothing stored, and the day
    it falls in holds the feeds' archives, all first seen at once: either would make every
    count of a new install's first week look like a fall or a rise. Empty when nothing is
    stored."""
    if history_since is None:
        return []
    days = (
        digest_period(recipient, period.day - timedelta(days=back))
        for back in range(BASELINE_DAYS, 0, -1)
    )
    return [day for day in days if day.starts_at >= history_since]


def _next_whole_second(when: datetime) -> datetime:
    whole = when.replace(microsecond=0)
    return whole if whole == when else whole + timedelta(seconds=1)


def next_send_period(recipient: Recipient, now: datetime) -> DigestPeriod:
    """The first period whose send time is after `now`."""
    period = latest_due_period(recipient, now)
    return digest_period(recipient, period.day + timedelta(days=1))


def describe_send_time(recipient: Recipient, period: DigestPeriod) -> str:
    """`07:30 Europe/Paris on 2026-12-06`: when a period's digest goes out, as its recipient
    reads a clock."""
    local = period.send_at.astimezone(ZoneInfo(recipient.timezone))
    return f"{local:%H:%M} {recipient.timezone} on {local:%Y-%m-%d}"


def is_digest_due(
    period: DigestPeriod, now: datetime, *, already_sent: bool, catch_up: timedelta
) -> bool:
    """Its send time has come, it is not sent, and it is not older than the catch-up window.

    A daemon that was down sends the digest it missed within `catch_up`, but never a stale
    one: yesterday's news the next evening helps nobody.
    """
    return not already_sent and period.send_at <= now <= period.send_at + catch_up


def local_days(timezone: str, days: int, now: datetime) -> list[tuple[date, datetime, datetime]]:
    """The last `days` local days up to and including today in `timezone`, oldest first:
    (day, its local midnight, the next one), in UTC, as a digest's period is cut."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    found = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        found.append(
            (
                day,
                _local_to_utc(day, time(0), zone),
                _local_to_utc(day + timedelta(days=1), time(0), zone),
            )
        )
    return found


def _local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time.

    In a fall-back fold the first occurrence (fold=0). In a spring-forward gap (02:30 on
    the last Sunday of March in Paris does not exist), the first instant after the gap.
    """
    local = datetime.combine(day, at, tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # In a gap (PEP 495), fold=1 reads the time with the offset after the transition and
    # fold=0 with the one before: the transition lies between the two instants. Bisect on
    # whole seconds (offsets change on whole seconds) for the first one with the new offset.
    low = local.replace(fold=1).astimezone(UTC)
    high = instant
    after = high.astimezone(zone).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid + 1
    return low + timedelta(seconds=lo)
