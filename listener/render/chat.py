"""Pure: a rendered alert email as a chat message: Slack-compatible incoming-webhook JSON
(`{"text": ...}`, which Mattermost, Rocket.Chat and Discord's /slack endpoint also read) or
a Microsoft Teams MessageCard."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any, Literal

MAX_CHARS = 3000  # chat messages are for a glance; the email has the rest


def chat_payload(message: EmailMessage, fmt: Literal["slack", "teams"]) -> dict[str, Any]:
    """The email's subject and plain-text part as the JSON a webhook of `fmt` takes."""
    subject = str(message["Subject"] or "")
    part = message.get_body(preferencelist=("plain",))
    body = part.get_content().strip() if isinstance(part, EmailMessage) else ""
    if len(body) > MAX_CHARS:
        body = body[: MAX_CHARS - 1].rstrip() + "…"
    if fmt == "teams":
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": subject,
            "title": subject,
            "text": body.replace("\n", "  \n"),  # Teams' markdown needs two spaces to break
        }
    return {"text": f"*{subject}*\n{body}"}
