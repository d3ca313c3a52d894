"""Pure: what one feed's poll changes.

`decide` turns what fetching (and parsing) ended with into a FeedUpdate: the items that are
new, changed or unchanged, the feed's next state (health, validators, title, a permanent
move) and when to poll it again, for Store.apply to write in one transaction. It is
reader's Decider: no I/O and no clock. What the store already holds comes in as `known`,
the time as `now`, the jitter as `rand`; fetching, parsing and the store are the poll job's.

A failure is a state, not an exception: it counts on the feed (error count, since when,
message) and backs off; a 410 marks the feed gone and stops polling it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from listener.domain import (
    FeedContent,
    FeedMove,
    FeedSource,
    FeedUpdate,
    Fetched,
    Item,
    Known,
    NotModified,
    Parsed,
    ParseFailure,
    PollPolicy,
    PollResult,
)
from listener.errors import FeedGone, FetchError, ParseError
from listener.feeds.dedupe import drop_duplicates
from listener.feeds.schedule import (
    next_poll_after_failure,
    next_poll_after_success,
    parse_http_date,
)

# What a poll of one feed ends with. A 2xx body with new bytes goes to the parser first, so
# a Fetched here is the same bytes as last time: "unchanged", nothing to parse.
PollOutcome = FetchError | NotModified | Fetched | Parsed | ParseFailure


def decide(
    feed: FeedSource,
    outcome: PollOutcome,
    known: Known,
    now: datetime,
    policy: PollPolicy,
    *,
    rand: float,
) -> FeedUpdate:
    """The update one poll of `feed` makes, given what it ended with."""
    if isinstance(outcome, FetchError):
        return _failed(feed, outcome, outcome.status, now, policy, rand)
    if isinstance(outcome, ParseFailure):
        return _failed(feed, outcome.error, outcome.fetched.status, now, policy, rand)
    if isinstance(outcome, NotModified):
        status, http_status = "not_modified", 304
    elif isinstance(outcome, Fetched):
        status, http_status = "unchanged", outcome.status
    else:
        return _parsed(feed, outcome, known, now, policy, rand)
    return FeedUpdate(
        result=PollResult(
            feed_id=feed.id,
            url=feed.url,
            status=status,
            started_at=now,
            duration_ms=outcome.duration_ms,
            http_status=http_status,
        ),
        error_count=0,
        failing_since=None,
        next_poll_at=_next_poll(feed, outcome.headers, now, policy, rand),
        move=_move(feed, outcome.permanent_url, known),
    )


def _parsed(
    feed: FeedSource, outcome: Parsed, known: Known, now: datetime, policy: PollPolicy, rand: float
) -> FeedUpdate:
    parsed, fetched = outcome.feed, outcome.fetched
    items = drop_duplicates(list(parsed.items))
    rekeyed = _rekeyed(items, known)
    hashes = {
        **known.content_hashes,
        **{item.key: known.renamed[item.key][1] for _, item in rekeyed},
    }
    new = tuple(item for item in items if item.key not in hashes)
    changed = tuple(
        item for item in items if item.key in hashes and hashes[item.key] != item.content_hash
    )
    unchanged = tuple(item for item in items if hashes.get(item.key) == item.content_hash)
    # A feed's first items are its archive. Those without a date would be stored as first
    # seen now, today's news: they get the feed's own date instead (its channel's, else the
    # response's Last-Modified), when it is earlier: a feed that last changed in 2017 has
    # not published since. Later items without a date are new when first seen, whatever a
    # stale channel date says.
    undated_at = None
    if feed.body_hash is None:  # the first body parsed: read the feed's date only then
        feed_date = parsed.updated_at or parse_http_date(fetched.headers.get("last-modified"))
        if feed_date is not None and feed_date < now:
            undated_at = feed_date
    return FeedUpdate(
        result=PollResult(
            feed_id=feed.id,
            url=feed.url,
            status="ok",
            started_at=now,
            duration_ms=outcome.duration_ms,
            http_status=fetched.status,
            new=len(new),
            updated=len(changed),
            seen=len(unchanged),
        ),
        error_count=0,
        failing_since=None,
        next_poll_at=_next_poll(feed, fetched.headers, now, policy, rand),
        content=FeedContent(
            etag=fetched.headers.get("etag"),
            last_modified=fetched.headers.get("last-modified"),
            body_hash=outcome.body_hash,
            warning=parsed.warning,
            title=parsed.title or None,
            site_url=parsed.site_url or None,
        ),
        move=_move(feed, fetched.permanent_url, known),
        new=new,
        changed=changed,
        unchanged=unchanged,
        rekeyed=rekeyed,
        undated_at=undated_at,
    )


def _rekeyed(items: list[Item], known: Known) -> tuple[tuple[str, Item], ...]:
    """(stored key, item) of the items to rename: their key is new, another form of their
    identifier is stored, and no item of this poll has that stored key (a feed that lists
    both forms keeps both items, as it always did). One item per stored key."""
    if not known.renamed:
        return ()
    keys = {item.key for item in items}
    taken: set[str] = set()
    pairs = []
    for item in items:
        stored = known.renamed.get(item.key)
        if item.key in known.content_hashes or stored is None:
            continue
        old = stored[0]
        if old not in keys and old not in taken:
            taken.add(old)
            pairs.append((old, item))
    return tuple(pairs)


def _failed(
    feed: FeedSource,
    error: FetchError | ParseError,
    http_status: int | None,
    now: datetime,
    policy: PollPolicy,
    rand: float,
) -> FeedUpdate:
    """The failure counts on the feed (how many, since when, the message) and backs off."""
    gone = isinstance(error, FeedGone)
    error_count = feed.error_count + 1
    if gone:
        next_poll_at = None
    else:
        retry_after = error.retry_after if isinstance(error, FetchError) else None
        next_poll_at = next_poll_after_failure(
            now, policy, feed.interval_minutes, error_count, retry_after, rand
        )
    return FeedUpdate(
        result=PollResult(
            feed_id=feed.id,
            url=feed.url,
            status="gone" if gone else "failed",
            started_at=now,
            duration_ms=0,
            http_status=http_status,
            error=error.message,
        ),
        error_count=error_count,
        failing_since=feed.failing_since or now,
        next_poll_at=next_poll_at,
        gone_at=now if gone else None,
    )


def _next_poll(
    feed: FeedSource, headers: Mapping[str, str], now: datetime, policy: PollPolicy, rand: float
) -> datetime:
    return next_poll_after_success(now, policy, feed.interval_minutes, headers, rand)


def _move(feed: FeedSource, permanent_url: str | None, known: Known) -> FeedMove | None:
    """Follow a 301/308 by moving the feed's URL, unless another feed already has it."""
    if not permanent_url or permanent_url == feed.url:
        return None
    if permanent_url in known.taken_urls:
        refused = f"moved permanently to {permanent_url}, already a feed here"
        return FeedMove(permanent_url, feed.url, refused=refused)
    return FeedMove(permanent_url, feed.url)
