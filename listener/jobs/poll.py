"""Wiring of the poll job; reads like the data-flow diagram in README.md.

poll: poll_matcher (watches caught up) ─► [fetcher thread] fetcher.fetch_many ─bytes─► parse
      (worker processes) ─ParsedFeed─► [this thread] store.known_hashes ─► decide
      ─FeedUpdate─► (a batch of feeds)
      classify_items (all their new and changed items at once) + match_poll_items ─►
      store.apply_all (one transaction per batch: each feed's items, predictions, mentions,
      feed state and polls row together)
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import importlib
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import structlog
from structlog.contextvars import bound_contextvars

from listener.classify.decision import Classifier, Prediction
from listener.classify.deferred import DeferredClassifier, ModelFiles
from listener.domain import (
    FeedSource,
    FeedUpdate,
    Fetched,
    FetchOutcome,
    Item,
    Known,
    Parsed,
    ParsedFeed,
    ParseFailure,
    PollResult,
    Predictions,
)
from listener.errors import ClassifierError, FetchError, ParseError, StoreError
from listener.feeds.decide import PollOutcome, decide
from listener.feeds.dedupe import key_aliases
from listener.feeds.language import preload_language_model, with_languages
from listener.feeds.schedule import is_network_down
from listener.jobs.classify import predict_items
from listener.jobs.services import Parser, Services
from listener.jobs.watches import match_poll_items, poll_matcher, sync_config_watches
from listener.store import Store
from listener.watches.matcher import WatchMatcher

log = structlog.get_logger(__name__)
T = TypeVar("T")

# A poll writes and classifies its feeds in batches (issue 14): one transaction per feed made
# a warm poll of 1,000 unchanged feeds 1,000 commits, and the model is several times faster
# per item on hundreds of texts than on one feed's 30. A batch is written when it holds this
# many feeds or new/changed items; each feed's items stay atomic with its state (the batch
# is one transaction), and a crash loses only unwritten feeds, which keep their validators
# and are fetched again.
BATCH_FEEDS = 250
BATCH_ITEMS = 1000
# Fewer new items than this are classified on the writer's thread: sending them to the
# workers would cost more than scoring them (a few ms per hundred items).
OFFLOAD_ITEMS = 200


def poll_job(services: Services, now: datetime) -> list[PollResult]:
    """The daemon's poll job: the config's feeds and watches into the store, then every
    feed that is due."""
    sync_config(services, now)
    results = poll_feeds(services, now)
    if is_network_down(results):  # once, rather than only one warning per feed
        log.warning("network_unreachable", feeds=len(results), error=results[0].error)
    return results


def sync_config_feeds(services: Services, now: datetime) -> int:
    """Add the [[feeds]] of the config file to the database (never removes any). New count."""
    added = 0
    for feed in services.settings.feeds:
        added += services.store.add_feed(
            feed.url,
            now=now,
            tags=feed.tags,
            interval_minutes=feed.interval_minutes,
            title=feed.title,
        )
    return added


def sync_config(services: Services, now: datetime) -> None:
    """The config's [[feeds]] and [[watches]] into the store (before each poll)."""
    sync_config_feeds(services, now)
    sync_config_watches(services.store, services.settings, now)


def poll_feeds(services: Services, now: datetime, *, all_feeds: bool = False) -> list[PollResult]:
    """Poll the feeds that are due at `now` (every feed with all_feeds); one result per feed.

    Two threads: a fetcher thread fetches and hands the bodies to the parse workers, and this
    thread decides, classifies (a large batch in the parse workers too) and writes what they
    produce. Writing a batch takes about as
    long as fetching and parsing it, so one no longer waits for the other (a cold poll of
    1,000 feeds spent half its time writing with the fetches and parsers idle). Only this
    thread touches the store.
    """
    sources = services.store.feed_sources(None if all_feeds else now)
    results: list[PollResult] = []
    if not sources:
        return results
    matcher = poll_matcher(services.store, services.stop)
    if services.stop.is_set():  # stopped while catching watches up: poll next time
        return results
    poll = services.settings.poll
    workers = parse_processes(poll.parse_workers, os.cpu_count() or 1)
    with _ParsePool(workers, poll.parse_memory_mb, poll.parse_timeout_s) as pool:
        _write_as_fetched(services, sources, _BatchWriter(services, matcher, now, results, pool))
    if services.stop.is_set():
        log.info("poll_stopped", polled=len(results), not_polled=len(sources) - len(results))
    return results


def _write_as_fetched(services: Services, sources: list[FeedSource], writer: _BatchWriter) -> None:
    """Start the fetcher thread, then decide and write each feed it hands over."""
    halt = _Halt(services.stop)
    handoff: queue.Queue[_Handoff] = queue.Queue(maxsize=HANDOFF_FEEDS)
    fetcher = threading.Thread(
        target=contextvars.copy_context().run,
        args=(
            _handing_over,
            functools.partial(
                _fetch_and_parse_all, services, sources, writer.pool, halt, handoff.put
            ),
            handoff.put,
        ),
        name="poll-fetch",
        daemon=True,
    )
    fetcher.start()
    failure: BaseException | None = None
    try:
        while (ready := _take(handoff)) is not None:
            if isinstance(ready, BaseException):
                failure = ready
            elif ready.parse is not None and isinstance(ready.outcome, Fetched):
                _add_parsed(writer, ready.source, ready.outcome, ready.body_hash, ready.parse)
            else:
                permanent = _permanent_url(ready.outcome)
                known = _known(services.store, ready.source, (), permanent)
                writer.add(ready.source, ready.outcome, known)
        if failure is not None:
            raise failure
        writer.flush()
    finally:
        if fetcher.is_alive():  # this thread failed: stop the fetcher and let it finish
            halt.abandon()
            while _take(handoff) is not None:
                pass
        while fetcher.is_alive():
            fetcher.join(SIGNAL_CHECK_S)


# How often a thread that waits returns to Python, so that a stop signal is handled. Python
# runs signal handlers in the main thread, between bytecodes; when the kernel delivers
# SIGTERM to another thread (a fetch thread), a main thread blocked in a bare Queue.get() or
# join() runs the handler only once it wakes, and a one-shot poll waited for its hung fetches
# (30 s) instead of stopping (seen in CI, 1 run in 6 under load).
SIGNAL_CHECK_S = 0.25


def _take(handoff: queue.Queue[_Handoff]) -> _Handoff:
    """handoff.get(), waking every SIGNAL_CHECK_S (a signal is handled meanwhile)."""
    while True:
        try:
            return handoff.get(timeout=SIGNAL_CHECK_S)
        except queue.Empty:
            continue


# Feeds fetched and parsed, waiting to be written: what the fetcher thread may run ahead
# of the writer by, and so what it holds in memory while a batch is written.
HANDOFF_FEEDS = 64


@dataclass(frozen=True, slots=True)
class _Ready:
    """One feed for the writer: its fetch's outcome, and its parse when it had new bytes."""

    source: FeedSource
    outcome: FetchOutcome | FetchError
    body_hash: str = ""
    parse: Future[ParsedFeed] | None = None


# The fetcher thread hands over feeds, then the error it died of (if any), then None.
_Handoff = _Ready | BaseException | None


class _Halt(threading.Event):
    """What stops the fetches: the caller's stop, or this poll's writer failing. fetch_many
    only asks is_set()."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self._stop = stop

    def is_set(self) -> bool:
        return self._stop.is_set() or super().is_set()

    def abandon(self) -> None:
        self.set()


def _handing_over(work: Callable[[], None], hand: Callable[[_Handoff], None]) -> None:
    """The fetcher thread's body: `work` hands feeds over as they are ready; then None,
    after the error it raised, if any (the writer thread raises it)."""
    try:
        work()
    except BaseException as exc:
        hand(exc)
    finally:
        hand(None)


def _fetch_and_parse_all(
    services: Services,
    sources: list[FeedSource],
    pool: _ParsePool,
    halt: _Halt,
    hand: Callable[[_Handoff], None],
) -> None:
    max_pending = 2 * pool.workers + 2  # bounds the bodies held in memory while parsing
    pending: dict[Future[ParsedFeed], tuple[FeedSource, Fetched, str]] = {}

    def ready(entry: tuple[FeedSource, Fetched, str], future: Future[ParsedFeed]) -> None:
        hand(_Ready(entry[0], entry[1], entry[2], future))

    def collect(block_until: int) -> None:
        while len(pending) > block_until:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = [pending.pop(future) for future in done if _broke(future)]
            for future in done:
                if not _broke(future):
                    ready(pending.pop(future), future)
            if broken:
                # A worker died (killed, out of memory) and took the pool down: every
                # other parse in it fails too. Let them end, then parse each of those
                # feeds alone in a new pool, so only the one that kills it is blamed.
                for future in wait(pending).done:
                    entry = pending.pop(future)
                    if _broke(future):
                        broken.append(entry)
                    else:
                        ready(entry, future)
                pool.restart()
                for entry in broken:
                    future = pool.submit(services.parse, entry[0].id, entry[1])
                    wait([future])
                    if _broke(future):
                        pool.restart()
                        future = _worker_died(entry[1])
                    ready(entry, future)

    for source, outcome in services.fetcher.fetch_many(sources, halt):
        if isinstance(outcome, Fetched):
            # New bytes go to a parser; the same bytes as last time (a server without
            # validators) need none, and are decided as "unchanged" right away.
            body_hash = hashlib.sha256(outcome.body).hexdigest()
            if body_hash != source.body_hash:
                classifier = services.classifier
                if isinstance(classifier, DeferredClassifier) and classifier.files is None:
                    # New bytes usually mean new items: a model without .npz arrays needs
                    # scikit-learn (~1.2 s), so import it meanwhile. (One with them loads in
                    # ~30 ms, and its large batches are scored in the workers.)
                    classifier.preload()
                preload_language_model(services.settings.cache_dir)
                future = pool.submit(services.parse, source.id, outcome)
                pending[future] = (source, outcome, body_hash)
                collect(max_pending)
                continue
        hand(_Ready(source, outcome))
    collect(0)


def _broke(future: Future[ParsedFeed]) -> bool:
    return isinstance(future.exception(), BrokenProcessPool)


def parse_processes(parse_workers: int, cores: int) -> int:
    """How many parse worker processes a poll starts; 0 parses inline, on the fetch thread.

    `parse_workers = 1` parses inline and N > 1 starts N. 0 (automatic) leaves a core to
    the poller: its fetches, language detection, classification and writes take as much
    CPU as the parsing, so on two cores one worker polls as fast as two and the process
    tree holds one worker's memory less (issue 14). One core parses inline.
    """
    if parse_workers:
        return parse_workers if parse_workers > 1 else 0
    return cores - 1


def _worker_died(fetched: Fetched) -> Future[ParsedFeed]:
    future: Future[ParsedFeed] = Future()
    future.set_exception(
        ParseError(fetched.url, "not parsed: the parse worker died parsing it (killed?)")
    )
    return future


class _ParsePool:
    """Parse worker processes (feedparser is CPU-bound and holds the GIL), each bounded in
    memory (RLIMIT_AS) and each parse in time; rebuilt when a worker dies.

    forkserver: forking the poller itself would copy its HTTP threads' locks mid-use.
    With no worker (`parse_processes` = 0), feeds are parsed inline, without the bounds.
    """

    def __init__(self, workers: int, memory_mb: int, timeout_s: float) -> None:
        """`workers` processes, or inline parsing for 0."""
        self.workers, self.memory_mb, self.timeout_s = workers, memory_mb, timeout_s
        # The fetcher thread submits parses and rebuilds a broken pool; the writer thread
        # submits classifications (`call`).
        self._lock = threading.Lock()
        # Started at the first parse: a poll that gets only 304s starts no process (not even
        # multiprocessing's resource tracker, a Python interpreter of its own).
        self._executor: Executor | None = None

    @property
    def shares_scoring(self) -> bool:
        """Whether classification is worth sending here: with two workers or more. A lone
        worker is already the poll's busiest process, parsing, and the poller keeps the
        scoring (which also keeps numpy and the model out of the worker's memory)."""
        return self.workers > 1

    def __enter__(self) -> _ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _start(self) -> Executor:
        context = multiprocessing.get_context("forkserver")
        modules = ["listener.feeds.parse"]
        if self.shares_scoring:
            modules.append("listener.classify.linear")
        # Imported once in the fork server (the first pool's list holds for the process),
        # and by each worker before its memory bound is taken, in case they were not.
        context.set_forkserver_preload(modules)
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.memory_mb, tuple(modules)),
        )

    def submit(self, parse: Parser, feed_id: int, fetched: Fetched) -> Future[ParsedFeed]:
        if self.workers == 0:
            return _INLINE.submit(parse, feed_id, fetched)
        return self.call(_parse_bounded, parse, feed_id, fetched, self.memory_mb, self.timeout_s)

    def call(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """fn(*args) in a worker (here, without one); a pool that a worker's death broke is
        rebuilt first."""
        if self.workers == 0:
            return _INLINE.submit(fn, *args)
        with self._lock:
            if self._executor is None:
                self._executor = self._start()
            try:
                return self._executor.submit(fn, *args)
            except BrokenProcessPool:
                self._restart_locked()
                return self._executor.submit(fn, *args)

    def restart(self) -> None:
        with self._lock:
            self._restart_locked()

    def _restart_locked(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._start()


def _start_worker(memory_mb: int, modules: tuple[str, ...]) -> None:
    """Runs first in each worker: import `modules`, then cap the address space at what the
    worker has plus `memory_mb`."""
    for module in modules:
        importlib.import_module(module)
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm", encoding="ascii") as statm:
        size = int(statm.read().split()[0]) * page
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


class _ParseTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _ParseTimeout


def _parse_bounded(
    parse: Parser, feed_id: int, fetched: Fetched, memory_mb: int, timeout_s: float
) -> ParsedFeed:
    """In a worker: a parse that runs out of the worker's memory or time is that feed's
    ParseError, and the worker lives on for the next feed."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return parse(feed_id, fetched)
    except MemoryError:
        message = f"not parsed: needs more than the parse worker's {memory_mb} MB"
        raise ParseError(fetched.url, message) from None
    except _ParseTimeout:
        raise ParseError(fetched.url, f"not parsed within {timeout_s:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _InlineExecutor(Executor):
    """Runs the call at submit time, on this thread: no worker process (`parse_processes` = 0)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except ParseError as exc:
            future.set_exception(exc)
        return future


_INLINE = _InlineExecutor()


def _result(future: Future[T]) -> T:
    """future.result(), waking every SIGNAL_CHECK_S (a signal is handled meanwhile)."""
    while True:
        try:
            return future.result(timeout=SIGNAL_CHECK_S)
        except TimeoutError:
            if future.done():  # the work itself raised TimeoutError
                raise


def _add_parsed(
    writer: _BatchWriter,
    source: FeedSource,
    fetched: Fetched,
    body_hash: str,
    future: Future[ParsedFeed],
) -> None:
    try:
        parsed = _result(future)
    except ParseError as exc:
        writer.add(source, ParseFailure(fetched, exc), Known())
        return
    started = time.monotonic()
    known = _known(writer.services.store, source, parsed.items, fetched.permanent_url)
    duration_ms = fetched.duration_ms + int((time.monotonic() - started) * 1000)
    writer.add(source, Parsed(fetched, parsed, body_hash, duration_ms), known)


def _known(
    store: Store, source: FeedSource, items: Iterable[Item], permanent_url: str | None
) -> Known:
    """What the store holds that deciding this feed's poll needs."""
    items = list(items)
    keys = list(dict.fromkeys(item.key for item in items))
    hashes = store.known_hashes(source.id, keys) if keys else {}
    renamed = _renamed(store, source, items, hashes)
    taken = (
        permanent_url is not None
        and permanent_url != source.url
        and store.feed_id_for_url(permanent_url) is not None
    )
    return Known(
        hashes, frozenset({permanent_url}) if taken and permanent_url else frozenset(), renamed
    )


def _renamed(
    store: Store, source: FeedSource, items: list[Item], hashes: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """New keys whose identifier the store holds in another form (dedupe.key_aliases): key ->
    (stored key, its content hash). Only for a feed parsed before, whose new items are few:
    a first poll has nothing stored to find."""
    if source.body_hash is None:
        return {}
    wanted = {
        alias: item.key for item in items if item.key not in hashes for alias in key_aliases(item)
    }
    if not wanted:
        return {}
    found = store.known_hashes(source.id, list(wanted))
    renamed: dict[str, tuple[str, str]] = {}
    for alias, stored_hash in found.items():
        renamed.setdefault(wanted[alias], (alias, stored_hash))
    return renamed


def _permanent_url(outcome: FetchOutcome | FetchError) -> str | None:
    return None if isinstance(outcome, FetchError) else outcome.permanent_url


@dataclass
class _BatchWriter:
    """Decides each feed's update as it comes, and classifies, matches and writes them a
    batch at a time (BATCH_FEEDS, BATCH_ITEMS); results are appended once written."""

    services: Services
    matcher: WatchMatcher
    now: datetime
    results: list[PollResult]
    pool: _ParsePool
    batch: list[tuple[FeedUpdate, PollOutcome, FeedSource]] = field(default_factory=list)
    items: int = 0

    def add(self, source: FeedSource, outcome: PollOutcome, known: Known) -> None:
        policy = self.services.settings.poll.policy
        update = decide(source, outcome, known, self.now, policy, rand=self.services.rand())
        # The unchanged items are not written: holding them for a batch only costs memory.
        # Only what is written needs its language.
        update = replace(
            update,
            new=with_languages(update.new),
            changed=with_languages(update.changed),
            unchanged=(),
        )
        if update.move is not None:
            # A move changes a feed's URL, which later feeds' decisions read from the store
            # (is the new URL taken?): it is written alone, with what came before it.
            self.flush()
            if update.move.refused is None:
                log.info("feed_moved", old_url=update.move.previous_url, new_url=update.move.url)
        self.batch.append((update, outcome, source))
        self.items += len(update.new) + len(update.changed)
        if update.move is not None or len(self.batch) >= BATCH_FEEDS or self.items >= BATCH_ITEMS:
            self.flush()

    def flush(self) -> None:
        """Classify the batch's new and changed items in one call, add each feed's labels
        and mentions, write the batch in one transaction, then log each feed."""
        if not self.batch:
            return
        items = [item for update, _, _ in self.batch for item in (*update.new, *update.changed)]
        classifier = self.services.classifier
        predicted = iter(self._predict(classifier, items) if classifier else ())
        updates = []
        for update, _, source in self.batch:
            if update.new or update.changed:
                own = [*update.new, *update.changed]
                # The predictions come in the batch's item order: feed by feed, item by item.
                by_key = {item.key: next(predicted) for item in own} if classifier else None
                update = replace(
                    update,
                    predictions=(
                        Predictions(classifier.version, by_key)
                        if classifier and by_key is not None
                        else None
                    ),
                    mentions=match_poll_items(self.matcher, own, source.tags),
                )
            updates.append(update)
        try:
            self.services.store.apply_all(updates)
            written = [update.result for update in updates]
        except StoreError:
            # Something in the batch could not be written (disk full, I/O error): write the
            # feeds one by one, so each failure is its own feed's and the others are kept.
            written = [
                self._apply_alone(update, source)
                for update, (_, _, source) in zip(updates, self.batch, strict=True)
            ]
        for update, result, (_, outcome, _) in zip(updates, written, self.batch, strict=True):
            if not result.extra.get("save_failed"):
                _log_result(update, outcome)
            self.results.append(result)
        self.batch.clear()
        self.items = 0

    def _predict(self, classifier: Classifier, items: list[Item]) -> list[Prediction]:
        """The items' predictions, computed by the parse workers when there are enough to
        share: scoring is CPU-bound Python, and this thread is the poll's busiest (a cold
        poll's writer spent half its time classifying while the workers waited). Any failure
        there (a worker killed, the model files replaced) falls back to this thread."""
        # (DeferredClassifier and LinearClassifier say where their model files are.)
        files = getattr(classifier, "files", None)
        if (
            not isinstance(files, ModelFiles)
            or not self.pool.shares_scoring
            or len(items) < OFFLOAD_ITEMS
        ):
            return predict_items(classifier, items)
        from listener.classify.linear import predict_from_files  # numpy: when needed

        pairs = [(item.title, item.summary) for item in items]
        size = -(-len(pairs) // self.pool.workers)
        futures = [
            self.pool.call(predict_from_files, files, classifier.version, pairs[i : i + size])
            for i in range(0, len(pairs), size)
        ]
        try:
            return [prediction for future in futures for prediction in _result(future)]
        except (BrokenProcessPool, CancelledError, ClassifierError, MemoryError, OSError) as exc:
            log.warning("classify_in_workers_failed", items=len(items), error=repr(exc))
            return predict_items(classifier, items)

    def _apply_alone(self, update: FeedUpdate, source: FeedSource) -> PollResult:
        try:
            self.services.store.apply(update)
        except StoreError as exc:
            return self._record_save_failure(source, exc)
        return update.result

    def _record_save_failure(self, source: FeedSource, exc: StoreError) -> PollResult:
        """A feed's poll that could not be written is that feed's failure: recorded on the
        feed, with its back-off, when the database can still take that small write; the poll
        goes on with the other feeds either way (their writes may still fit)."""
        error = FetchError(source.url, f"cannot save: {exc}", kind="store")
        policy = self.services.settings.poll.policy
        failed = decide(source, error, Known(), self.now, policy, rand=0.5)
        result = replace(failed.result, extra={**failed.result.extra, "save_failed": True})
        try:
            self.services.store.apply(replace(failed, result=result))
        except StoreError as again:
            log.error(
                "feed_save_failed", feed=source.url, error=str(exc), recorded=False, why=str(again)
            )
            return result
        log.error("feed_save_failed", feed=source.url, error=str(exc), recorded=True)
        return result


def _log_result(update: FeedUpdate, outcome: PollOutcome) -> None:
    """One canonical line per feed: feed_polled status=… new=… duration_ms=…."""
    result = update.result
    extra: dict[str, Any] = {}
    if isinstance(outcome, FetchError | ParseFailure):
        kind = outcome.kind if isinstance(outcome, FetchError) else "parse"
        extra = {"kind": kind, "error_count": update.error_count}
    elif isinstance(outcome, Parsed):
        extra = {
            "warning": outcome.feed.warning,
            "skipped": outcome.feed.skipped,
            "renamed": len(update.rekeyed),  # stored items found under another identifier
        }
    fields = {k: v for k, v in extra.items() if v not in (None, 0)}
    with bound_contextvars(feed=result.url):
        event = log.warning if result.status in ("failed", "gone") else log.info
        event(
            "feed_polled",
            status=result.status,
            http_status=result.http_status,
            new=result.new,
            updated=result.updated,
            seen=result.seen,
            duration_ms=result.duration_ms,
            error=result.error,
            **fields,
        )
