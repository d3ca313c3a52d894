"""Pure: the errors listener raises on purpose, in one tree under ListenerError.

Anything else that escapes is a bug and is allowed to propagate (see docs/design.md).
"""

from __future__ import annotations

import unicodedata


class ListenerError(Exception):
    """Base for errors we raise on purpose."""


class ConfigError(ListenerError):
    """Bad settings at startup; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class FeedError(ListenerError):
    """A problem with one feed; carries the feed's URL."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.message = message
        super().__init__(f"{url}: {message}")

    def __reduce__(self) -> tuple[type[FeedError], tuple[str, str]]:
        # Parsing runs in worker processes; the default reduce would call __init__ with
        # the formatted message only.
        return (type(self), (self.url, self.message))


class FetchError(FeedError):
    """Network failure, timeout, HTTP >= 400, body over the size cap.

    `status` is the HTTP status when there was a response; `retry_after` is the raw
    Retry-After header of a 429/503, which the scheduler honours.
    """

    def __init__(
        self,
        url: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: str | None = None,
        kind: str = "error",
    ) -> None:
        super().__init__(url, message)
        self.status = status
        self.retry_after = retry_after
        self.kind = kind

    def __reduce__(self) -> tuple[type[FeedError], tuple[str, str]]:
        raise TypeError("FetchError stays in the fetching process")


class FeedGone(FetchError):
    """HTTP 410: the publisher says the feed is gone for good; we stop polling it."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url, "HTTP 410 Gone: feed removed by its publisher", status=410, kind="gone"
        )


class ParseError(FeedError):
    """Not a feed, or nothing usable in it."""


class ClassifierError(ListenerError):
    """Model artifact missing, unreadable or incompatible."""


class StoreError(ListenerError):
    """A database problem: locked, read-only, corrupt, or a bad query."""


class QuerySyntaxError(ListenerError):
    """A search or watch query that does not parse.

    Watch queries give a 0-based `position` into `query`, shown with a caret under it;
    search queries say where in their message (FTS5 reports its own errors that way).
    """

    def __init__(self, message: str, query: str, position: int | None = None) -> None:
        self.message = message
        self.query = query
        self.position = position
        if position is None:
            super().__init__(message)
        else:
            super().__init__(f"{message} at position {position}\n{_caret_lines(query, position)}")

    def __reduce__(self) -> tuple[type[QuerySyntaxError], tuple[str, str, int | None]]:
        return (type(self), (self.message, self.query, self.position))


class OpmlError(ListenerError):
    """The document is not OPML we can read."""


class DeliveryError(ListenerError):
    """A message could not be delivered (email or chat webhook); sending retries it later."""


class MailError(DeliveryError):
    """The SMTP server refused the message or could not be reached."""


class WebhookError(DeliveryError):
    """A chat webhook refused the message (HTTP >= 400) or could not be reached."""


def _caret_lines(query: str, position: int) -> str:
    shown = "".join(c if c.isprintable() else " " for c in query)
    column = sum(_width(c) for c in shown[:position])
    return f"  {shown}\n  {' ' * column}^"


def _width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1
