"""I/O: post a chat message to an incoming webhook (Slack-compatible or Microsoft Teams).

Decides nothing: `jobs.sending` claims, retries with back-off and marks the alert sent, as
for an email. Any failure becomes a `WebhookError` naming the host and what it said; the
URL's path (a secret token, for Slack) is never logged or shown.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Literal
from urllib.parse import urlsplit

from listener import __version__
from listener.errors import WebhookError
from listener.render.chat import chat_payload


def post_webhook(
    message: EmailMessage,
    url: str,
    fmt: Literal["slack", "teams"],
    *,
    timeout_s: float = 20.0,
) -> str:
    """POST the message as JSON; how it went, in a few words ("webhook host 200")."""
    host = urlsplit(url).netloc
    body = json.dumps(chat_payload(message, fmt), ensure_ascii=False).encode()
    request = urllib.request.Request(  # noqa: S310 (the URL is checked as http(s) in config)
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"listener/{__version__}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (as above)
            status = response.status
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"webhook {host} refused the message: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookError(f"webhook {host} unreachable: {reason}") from exc
    return f"webhook {host} {status}"
