"""Pure apart from reading its templates: a SpikeAlert as a multipart/alternative email.

Like the digest, times are converted to the recipient's zone only here, feed text reaches
the HTML only through autoescape, and the matched terms are marked as data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from listener.domain import ALL_FUNCTIONS, Recipient
from listener.render.parts import (
    LABEL_SHORT,
    local_time,
    make_message,
    settings_place,
    text_heading,
    text_wrap,
)
from listener.render.watch import MentionView, mention_view, text_marks
from listener.watches.spikes import SpikeAlert, Volume

FUNCTION_NAMES = {ALL_FUNCTIONS: "All mentions", **LABEL_SHORT}
_SLUG = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class _FunctionView:
    name: str
    count: int
    usual: str  # "2.1 ± 1.0"
    threshold: str
    ratio: str  # "x4.2" against the daily mean, or "new" when it was 0


@dataclass(frozen=True, slots=True)
class _TermView:
    term: str
    count: int
    usual: str


def render_alert(
    alert: SpikeAlert,
    recipient: Recipient,
    *,
    sender: str,
    generated_at: datetime,
    message_domain: str = "listener.localhost",
    settings_file: str | None = None,
) -> EmailMessage:
    """The alert as text/plain then text/html; its footer names `settings_file` (the file the
    settings came from) as where to change it."""
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be an aware datetime")
    zone = ZoneInfo(recipient.timezone)
    subject = alert_subject(alert)
    functions = tuple(
        _function_view(name, volume, alert.min_count) for name, volume in alert.functions
    )
    context = {
        "subject": subject,  # the HTML <title>
        "watch": alert.watch,
        "recipient": recipient,
        "settings_file": settings_file,
        "settings_place": settings_place(settings_file),
        "timezone": recipient.timezone,
        "window": f"{local_time(alert.window_start, zone, None)} – "
        f"{local_time(alert.opened_at, zone, None)}",
        "functions": functions,
        "terms": tuple(
            _TermView(t.term, t.count, f"{t.daily_average:.1f}") for t in alert.terms[:8]
        ),
        "items": tuple(_item_view(alert, index, zone) for index in range(len(alert.items))),
        "generated": local_time(generated_at, zone, None),
        "text_heading": text_heading,
        "text_wrap": text_wrap,
        "text_marks": text_marks,
    }
    return make_message(
        "alert",
        context,
        sender=sender,
        recipient=recipient,
        subject=subject,
        generated_at=generated_at,
        message_id=alert_message_id(alert, recipient, message_domain),
        headers={"X-Listener-Alert": f"{alert.watch.name}/{alert.opened_at:%Y-%m-%dT%H:%MZ}"},
    )


def alert_subject(alert: SpikeAlert) -> str:
    """'listener alert · acme: 23 mentions in 24 h (usually 2.1/day) · PR, HR'."""
    name, volume = alert.functions[0]
    where = "" if name == ALL_FUNCTIONS else f" in {FUNCTION_NAMES.get(name, name)}"
    head = (
        f"listener alert · {alert.watch.name}{where}: {volume.count} mentions in 24 h "
        f"(usually {volume.mean:.1f}/day)"
    )
    others = [FUNCTION_NAMES.get(n, n) for n, _ in alert.functions[1:]]
    return head + (f" · also {', '.join(others)}" if others else "")


def alert_message_id(alert: SpikeAlert, recipient: Recipient, domain: str) -> str:
    """Deterministic per (watch, check, recipient): a retried send is the same message."""
    opened = f"{alert.opened_at:%Y%m%dT%H}"
    key = f"{alert.watch.name}\n{opened}\n{recipient.name}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    slug = _SLUG.sub("-", alert.watch.name.lower()).strip("-")[:32] or "watch"
    return f"<alert.{opened}.{slug}.{digest}@{domain}>"


def _function_view(name: str, volume: Volume, min_count: int) -> _FunctionView:
    ratio = f"×{volume.count / volume.mean:.1f}" if volume.mean > 0 else "new"
    return _FunctionView(
        name=FUNCTION_NAMES.get(name, name),
        count=volume.count,
        usual=f"{volume.mean:.1f} ± {volume.sd:.1f}",
        # What the count had to beat: mean + k sd, and never less than the minimum count.
        threshold=f"{max(volume.threshold, min_count - 1):.1f}",
        ratio=ratio,
    )


def _item_view(alert: SpikeAlert, index: int, zone: ZoneInfo) -> MentionView:
    item, terms, _ = alert.items[index]
    return mention_view(item, terms, (), None, zone)
