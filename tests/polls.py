"""A poll's write as the poll job makes it: a FeedUpdate that Store.apply writes at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from listener.domain import FeedUpdate, Item, PollMentions, PollResult
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
