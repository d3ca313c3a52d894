"""Pure: the value types that flow between stages (see the data-flow diagram in README.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol, get_args
from urllib.parse import urlsplit

from listener import __version__
from listener.errors import ParseError

# The business functions, in the order every table, report and digest uses.
LABELS: tuple[str, ...] = (
    "marketing",
    "communication",
    "human_resources",
    "customer_service",
    "business_intelligence",
    "other",
)
# Short forms people type for the functions (`listener label 12 hr`, `--function pr`).
LABEL_ALIASES: Mapping[str, str] = {
    "mkt": "marketing",
    "pr": "communication",
    "comms": "communication",
    "hr": "human_resources",
    "cs": "customer_service",
    "cx": "customer_service",
    "bi": "business_intelligence",
}


def parse_label(text: str) -> str:
    """A function's name as a person types it: any case, `-` or space for `_`, or a short
    form (`HR`, `customer-service`, `bi`). ValueError names the choices."""
    folded = text.strip().lower().replace("-", "_").replace(" ", "_")
    label = LABEL_ALIASES.get(folded, folded)
    if label not in LABELS:
        shorts = ", ".join(f"{short}={long}" for short, long in LABEL_ALIASES.items())
        raise ValueError(f"unknown label {text!r}; choose from {', '.join(LABELS)} ({shorts})")
    return label


def is_http_url(url: str) -> bool:
    """What counts as a feed URL everywhere (config, OPML, the command line): an absolute
    http(s) URL with a host."""
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return False  # a newline or tab is never part of a URL (and httpx refuses it later)
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # "http://[::1" (an unclosed IPv6 literal), a port out of range
        return False


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """Which stored items `search`, `export` and `stats` read. `functions` match an item's
    effective labels (a person's correction, else the confident model's labels; for
    `uncertain` items, the model's best guess); `min_score` asks one of those labels (of
    `functions`, when given) to score at least that much, a person's label counting 1.0."""

    since: datetime | None = None
    feed_url: str | None = None
    tag: str | None = None
    watch: str | None = None
    functions: tuple[str, ...] = ()
    uncertain: bool = False
    min_score: float | None = None


# -- the components' settings: config.Settings holds them, and each default is written here ---


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """When to poll a feed again (schedule.next_poll_after_success / _failure)."""

    interval_minutes: int = 60
    jitter_fraction: float = 0.1
    max_interval_minutes: int = 1440
    max_backoff_minutes: int = 1440


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How fetch.fetch_many may use the network."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 60.0  # the whole fetch, redirects and a trickling body included
    max_body_bytes: int = 15 * 1024 * 1024  # after decompression (compression bomb guard)
    max_redirects: int = 5
    max_in_flight: int = 16  # concurrent requests overall
    max_per_host: int = 2  # concurrent requests per host:port
    refuse_private_addresses: bool = False  # loopback, private, link-local... after DNS
    user_agent: str = f"listener/{__version__} (+https://github.com/listener-project/listener)"

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.max_per_host < 1:
            raise ValueError("max_in_flight and max_per_host must be at least 1")


SmtpSecurity = Literal["starttls", "tls", "none"]


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how mail.deliver sends."""

    host: str = ""  # "" means: no SMTP server, write .eml files to the outbox
    port: int = 587
    security: SmtpSecurity = "starttls"  # "tls" is implicit TLS (port 465)
    username: str = ""
    # From the environment (LISTENER_SMTP_PASSWORD); kept out of repr so it is never logged.
    password: str = field(default="", repr=False)
    timeout_s: float = 30.0
    retries: int = 2  # extra attempts inside one send, for transient failures
    retry_backoff_s: float = 2.0  # first pause, doubled each time, at most mail.MAX_BACKOFF_S
    ca_file: str = ""  # PEM bundle trusted instead of the system's (private CA, self-signed)

    def __post_init__(self) -> None:
        if self.security not in get_args(SmtpSecurity):
            raise ValueError(f"smtp security must be starttls, tls or none, not {self.security!r}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SpikeRule:
    """What spikes.assess and plan_episodes call a spike."""

    baseline_days: int = 7
    threshold_sd: float = 3.0
    min_count: int = 5


# -- polling --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedSource:
    """A feed as the poller needs it: where to fetch it and what we know of its last fetch."""

    id: int
    url: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = (
        None  # sha256 of the last body we parsed, for servers without validators
    )
    error_count: int = 0
    interval_minutes: int | None = None  # None: the global default
    failing_since: datetime | None = None
    tags: tuple[str, ...] = ()  # the feed's tags, for watches scoped by tag


@dataclass(frozen=True, slots=True)
class Fetched:
    """A 2xx response with its whole (decompressed, size-capped) body."""

    url: str  # the URL finally fetched, after redirects
    status: int
    body: bytes
    headers: Mapping[str, str]  # lower-cased names
    permanent_url: str | None = None  # set when a 301/308 chain moved the feed for good
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304: the feed has not changed since the validators we sent."""

    url: str
    headers: Mapping[str, str]
    permanent_url: str | None = None
    duration_ms: int = 0


FetchOutcome = Fetched | NotModified


@dataclass(frozen=True, slots=True)
class Item:
    """One normalised feed item. Text fields are plain text (no markup, entities decoded)."""

    feed_id: int
    key: str  # stable per-feed identity (see dedupe.item_key)
    guid: str | None
    url: str | None  # absolute
    title: str
    summary: str
    author: str | None
    published_at: datetime | None  # aware UTC; None when missing or unparseable
    published_raw: str | None  # the date string as the feed gave it
    lang: str | None  # ISO 639-1, detected from the text
    content_hash: str  # changes when the item's visible content changes


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What parse_feed returns: feed-level metadata plus the items."""

    title: str | None
    site_url: str | None
    items: tuple[Item, ...]
    warning: str | None = None  # feedparser's bozo message when the feed was still usable
    skipped: int = 0  # entries dropped because nothing usable was in them
    updated_at: datetime | None = None  # when the feed says it last changed (its own date)


@dataclass(frozen=True, slots=True)
class PollResult:
    """The outcome of polling one feed (one canonical log line, one polls row)."""

    feed_id: int
    url: str
    status: str  # ok | not_modified | unchanged | failed | gone
    started_at: datetime
    duration_ms: int
    http_status: int | None = None
    new: int = 0
    updated: int = 0
    seen: int = 0
    error: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


# -- one poll's update: feeds.decide makes it, the poll job completes it, Store.apply writes it


@dataclass(frozen=True, slots=True)
class Parsed:
    """A 2xx body with new bytes, and what parse_feed made of it."""

    fetched: Fetched
    feed: ParsedFeed
    body_hash: str  # sha256 of the body: the same bytes next time are not parsed again
    duration_ms: int  # the fetch's, plus the store lookups before the decision


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """A 2xx body that parse_feed refused."""

    fetched: Fetched
    error: ParseError


@dataclass(frozen=True, slots=True)
class Known:
    """What the store already holds that a poll's decision needs."""

    # item key -> content hash, for the stored items among those the feed now has
    content_hashes: Mapping[str, str] = field(default_factory=dict)
    # among the URLs the feed may move to, those another feed already has
    taken_urls: frozenset[str] = frozenset()
    # item key -> (the key it is stored under, that item's content hash), for the items of
    # the feed whose key is new but whose identifier was stored in another form
    # (dedupe.key_aliases)
    renamed: Mapping[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeedContent:
    """What a parsed body tells about its feed."""

    etag: str | None  # the validators the next conditional GET sends
    last_modified: str | None
    body_hash: str
    warning: str | None  # the parser's, when the feed was usable anyway; None clears the last
    title: str | None  # None: the stored title stays
    site_url: str | None  # None: the stored one stays


@dataclass(frozen=True, slots=True)
class FeedMove:
    """A 301/308 chain moved the feed for good: to `url`, unless another feed already has
    that URL; then `refused` says so, as the feed's warning, and the feed keeps its URL."""

    url: str
    previous_url: str
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Predictions:
    """One model's predictions for some items, by item key."""

    model_version: str
    by_key: Mapping[str, ScoredLabels]


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """Everything one feed's poll changes: decided by feeds.decide.decide, completed with the
    new and changed items' predictions and watch mentions by the poll job, and written in one
    transaction by Store.apply (reader's FeedUpdateIntent with its EntryUpdateIntents)."""

    result: PollResult  # the polls row; its time, status, HTTP status and error are the feed's
    error_count: int  # consecutive failures, 0 after a success
    failing_since: datetime | None
    next_poll_at: datetime | None  # None: never again (gone)
    gone_at: datetime | None = None  # set once, when the publisher says the feed is gone
    content: FeedContent | None = None  # None: no body was parsed, the stored values stay
    move: FeedMove | None = None
    new: tuple[Item, ...] = ()
    changed: tuple[Item, ...] = ()  # stored, but their content changed
    unchanged: tuple[Item, ...] = ()
    # (stored key, item) of the changed and unchanged items stored under another key (an
    # identifier in another form): renamed to item.key before they are updated
    rekeyed: tuple[tuple[str, Item], ...] = ()
    # The date new items without one are stored with; None: the poll's time (first seen).
    undated_at: datetime | None = None
    predictions: Predictions | None = None
    mentions: PollMentions | None = None


# -- a feed as stored ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedRow:
    """A feed as the store keeps it, for people (feeds list, status) and the digest."""

    id: int
    url: str
    title: str | None
    tags: tuple[str, ...]
    interval_minutes: int | None
    added_at: datetime
    next_poll_at: datetime | None
    last_polled_at: datetime | None
    last_status: str | None
    last_http_status: int | None
    error_count: int
    last_error: str | None
    failing_since: datetime | None
    gone_at: datetime | None
    last_warning: str | None
    last_new_item_at: datetime | None
    item_count: int  # only when listed with_item_count


# -- classification -------------------------------------------------------------------------


class ScoredLabels(Protocol):
    """A prediction as the store keeps it (classify.model.Prediction is one)."""

    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def scores(self) -> Mapping[str, float]: ...
    @property
    def uncertain(self) -> bool: ...


# -- watches -----------------------------------------------------------------------------

WATCH_KINDS: tuple[str, ...] = ("brand", "competitor", "person", "topic")
Terms = tuple[str, ...]  # the terms a watch matched in one item, as its query spells them
ALL_FUNCTIONS = "all"  # spike detection's pseudo-function: every mention, labelled or not


@dataclass(frozen=True, slots=True)
class Watch:
    """A named query over items: a brand, a competitor, a person or a topic."""

    name: str
    query: str
    kind: str = "brand"  # one of WATCH_KINDS
    tags: tuple[str, ...] = ()  # only items of feeds with one of these tags; empty: every feed


@dataclass(frozen=True, slots=True)
class WatchRow:
    """A watch as the store keeps it: its query, scope, and how far it has matched."""

    id: int
    name: str
    kind: str
    query: str
    tags: tuple[str, ...]
    origin: str  # config | cli
    revision: int  # moves on each change of the query or the scope
    matched_through: int  # the last item id it was matched against
    added_at: datetime
    updated_at: datetime
    mention_count: int  # only when listed with_counts
    last_mention_at: datetime | None

    def watch(self) -> Watch:
        return Watch(name=self.name, query=self.query, kind=self.kind, tags=self.tags)


@dataclass(frozen=True, slots=True)
class MatchRow:
    """A stored item as matching reads it."""

    id: int
    title: str
    summary: str
    mentioned_at: datetime  # published, or first seen if that is earlier
    feed_tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mention:
    """A watch matched in an item."""

    watch_id: int
    item_id: int
    mentioned_at: datetime
    terms: Terms


@dataclass(frozen=True, slots=True)
class MatchCursor:
    """One watch's step in a backfill batch: matched at `revision`, over the items after
    `after` up to `last` (item ids)."""

    watch_id: int
    revision: int
    after: int
    last: int


@dataclass(frozen=True, slots=True)
class NewSpike:
    """A spike episode a check opens: the watch and function, and the volume that did it."""

    watch_id: int
    function: str
    count: int  # mentions in the last 24 hours
    baseline_mean: float
    baseline_sd: float
    threshold: float


@dataclass(frozen=True, slots=True)
class SpikeRow:
    """An open (or closed) spike episode of one watch and function."""

    id: int
    watch_id: int
    function: str
    started_at: datetime
    count: int
    peak_count: int
    baseline_mean: float
    baseline_sd: float


@dataclass(frozen=True, slots=True)
class PollMentions:
    """What one feed's poll matched, for the store to write with its items."""

    revisions: Mapping[int, int]  # watch id -> the revision these matches were made with
    by_key: Mapping[str, Mapping[int, Terms]]  # item key -> watch id -> terms


# -- the digest ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """One digest recipient, as configured in [[recipients]]."""

    name: str
    email: str
    timezone: str = "UTC"  # IANA name, e.g. Europe/Paris
    send_at: str = "07:30"  # local wall-clock time, HH:MM
    functions: tuple[str, ...] = ()  # labels followed; empty: all of them
    tags: tuple[str, ...] = ()  # feed tags followed; empty: every feed
    items_per_section: int = 5
    send_when_empty: bool = True  # a short "nothing new" email on quiet days
    watches: tuple[str, ...] = ()  # watch names followed; empty: every watch
    alerts: bool = True  # spike alerts for the watches followed
    webhook_url: str = ""  # spike alerts also go to this chat webhook; "" for none
    webhook_format: Literal["slack", "teams"] = "slack"  # the webhook's JSON payload
    webhook_digest: bool = False  # also post a one-paragraph digest summary to the webhook


@dataclass(frozen=True, slots=True)
class DigestPeriod:
    """The local day one digest covers, and when it is due."""

    recipient: str
    day: date  # the local date the digest is sent on; it covers the local day before
    starts_at: datetime  # UTC, inclusive: local midnight starting the day before `day`
    ends_at: datetime  # UTC, exclusive: local midnight starting `day`
    send_at: datetime  # UTC instant of the recipient's local send time on `day`


@dataclass(frozen=True, slots=True)
class DigestItem:
    """An item as the digest sees it: its text, feed, effective labels and scores."""

    item_id: int
    title: str
    url: str | None
    summary: str
    feed_title: str | None
    feed_url: str
    feed_tags: tuple[str, ...]
    published_at: datetime
    fetched_at: datetime
    lang: str | None
    labels: tuple[str, ...]  # effective labels (human correction, else confident model)
    scores: Mapping[str, float]  # label -> score, for every label the model scored
    uncertain: bool
    corrected: bool = False  # `labels` are a person's (listener label), not the model's


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """A feed that needs attention: failing, gone or silent."""

    url: str
    title: str | None
    state: str  # as schedule.feed_health words it, e.g. "failing since 2026-11-20 07:00Z"


BASELINE_DAYS = 7  # a digest compares its counts with the daily average of up to 7 days


@dataclass(frozen=True, slots=True)
class DigestData:
    """What the store hands to build_digest for one recipient and period."""

    items: tuple[DigestItem, ...]  # new in the period, from the feeds the recipient follows
    # label -> item counts of each baseline day (oldest first; a label with none is absent)
    daily_counts: Mapping[str, tuple[int, ...]]
    unhealthy_feeds: tuple[FeedHealth, ...]
    watches: tuple[Watch, ...] = ()  # the watches the recipient follows, in config order
    # item_id -> {watch name: matched terms}, for the period's items that mention a watch
    mentions: Mapping[int, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # watch name -> mention counts of each baseline day
    watch_daily_counts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # The baseline: the last BASELINE_DAYS local days before the period that began after
    # listening to the recipient's feeds began (that day holds their archives). 0: none yet.
    baseline_days: int = BASELINE_DAYS
