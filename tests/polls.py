"""A poll's write as the poll job makes it: a FeedUpdate that Store.apply writes at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from listener.domain import FeedUpdate, Fetched, Item, ParsedFeed, PollMentions, PollResult
from listener.store import Store


def apply_poll(
    store: Store,
    result: PollResult,
    new: Sequence[Item] = (),
    changed: Sequence[Item] = (),
    *,
    mentions: PollMentions | None = None,
    next_poll_at: datetime | None = None,
    gone_at: datetime | None = None,
) -> None:
    """A successful poll of `result.feed_id` (or, with gone_at, its end) that stores `new`
    and updates `changed`."""
    store.apply(
        FeedUpdate(
            result=result,
            error_count=0,
            failing_since=None,
            next_poll_at=next_poll_at,
            gone_at=gone_at,
            new=tuple(new),
            changed=tuple(changed),
            mentions=mentions,
        )
    )


# Runs in parse workers, which unpickle it by module: keep this module's imports light (a
# worker's address space is capped; importing scikit-learn there would not fit).
TOPICS = (
    ("We are hiring nurses in Lyon", "Join our care team: apply before the end of the month."),
    ("Nous recrutons des ingénieurs", "Rejoignez l'équipe produit à Nantes."),
    ("Spring sale: 30% off every jacket", "Our new campaign starts on Monday in every store."),
    ("Outage on the payment service", "Card payments fail for some customers; we are on it."),
    ("Quarterly results beat forecasts", "Revenue grew 8% on a year, says the chief executive."),
)


def many_items(feed_id: int, fetched: Fetched) -> ParsedFeed:
    """150 items a feed, from five topics (runs in a parse worker: module level)."""
    items = tuple(
        Item(
            feed_id,
            f"{feed_id}-{n}",
            None,
            None,
            f"{title} #{n}",
            text,
            None,
            None,
            None,
            None,
            "h",
        )
        for n, (title, text) in enumerate(TOPICS * 30)
    )
    return ParsedFeed(title="Many", site_url=None, items=items)
