"""Wiring of exactly-once sending, written once for the digests and the alerts:

claim the row ─► compose (read, build, render) ─► deliver (SMTP or outbox) ─► mark it sent
                                    └─ a failed send: release the claim, retried later

The claim is one conditional write (healthchecks' `sendreports` with `next_report_date`),
so two senders never both send, and a sender that dies after claiming is taken over once
its claim is stale. The one window left (the process dies after the server accepted the
message, before the row is marked) resends after the claim times out, with the same
Message-ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from listener.config import Settings
from listener.errors import DeliveryError
from listener.mail import deliver

_RETRY_FIRST = timedelta(minutes=5)
_RETRY_MAX = timedelta(hours=2)
NOTHING_TO_SEND = "nothing to send"  # the delivery a row is marked with when compose gives none


# The row of a recipient's chat webhook: each channel (email, webhook) is sent exactly once.
WEBHOOK_SUFFIX = "#webhook"


@dataclass(frozen=True, slots=True)
class Letter:
    """A rendered email, ready to deliver."""

    message: EmailMessage
    message_id: str
    outbox_name: str  # the .eml file's name when there is no SMTP server
    items: int = 0  # what it shows (a digest's row records it)


class ClaimedRow(Protocol):
    """One row of an exactly-once table (a digest's, an alert's), as the saga moves it."""

    def claim(self, *, now: datetime, stale_before: datetime) -> str | None:
        """The claim id, or None when it is sent, claimed by a live sender, or waiting for
        its next retry."""
        ...

    def mark_sent(
        self, claim_id: str, letter: Letter | None, *, now: datetime, delivery: str
    ) -> None: ...

    def release(self, claim_id: str, *, error: str, retry_at: datetime) -> None: ...

    def attempts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Sent:
    letter: Letter
    delivery: str  # how, in a few words: "smtp host:port 250 ..." or "outbox path"


@dataclass(frozen=True, slots=True)
class NotClaimed:
    """Sent already, claimed by a live sender, or waiting for its next retry."""


@dataclass(frozen=True, slots=True)
class NothingToSend:
    """compose had nothing worth sending; the row is marked sent all the same."""


@dataclass(frozen=True, slots=True)
class Failed:
    error: str
    attempts: int  # this one included
    retry_at: datetime


SendOutcome = Sent | NotClaimed | NothingToSend | Failed


def send_once(
    row: ClaimedRow,
    compose: Callable[[], Letter | None],
    settings: Settings,
    now: datetime,
    *,
    deliver_letter: Callable[[Letter], str] | None = None,
) -> SendOutcome:
    """Claim `row`, compose its letter, deliver it (by email, or with `deliver_letter`) and
    mark the row sent; on a DeliveryError, release the claim with a retry time
    (retry_time)."""
    stale = now - timedelta(minutes=settings.digest.claim_timeout_minutes)
    claim = row.claim(now=now, stale_before=stale)
    if claim is None:
        return NotClaimed()
    letter = compose()
    if letter is None:
        row.mark_sent(claim, None, now=now, delivery=NOTHING_TO_SEND)
        return NothingToSend()
    try:
        if deliver_letter is not None:  # another channel (a chat webhook)
            delivery = deliver_letter(letter)
        else:
            delivery = deliver(
                letter.message, settings.smtp, Path(settings.digest.outbox), letter.outbox_name
            )
    except DeliveryError as exc:
        attempts = row.attempts()
        retry_at = retry_time(now, attempts)
        row.release(claim, error=str(exc), retry_at=retry_at)
        return Failed(str(exc), attempts + 1, retry_at)
    row.mark_sent(claim, letter, now=now, delivery=delivery)
    return Sent(letter, delivery)


def retry_time(now: datetime, attempts: int) -> datetime:
    """When to retry a send that failed `attempts` + 1 times: 5 min, doubling, at most 2 h."""
    delay: timedelta = min(_RETRY_FIRST * (2 ** min(attempts, 10)), _RETRY_MAX)
    return now + delay
