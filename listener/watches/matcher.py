"""Pure: the watches as the poller and the backfill apply them to items.

A `WatchMatcher` compiles the queries once (query.CompiledWatches) and adds what the
query language does not know: a watch's scope by feed tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from listener.domain import Terms
from listener.watches.query import CompiledWatches, Query


@dataclass(frozen=True, slots=True)
class ActiveWatch:
    """A stored watch, its query parsed: what matching needs."""

    id: int
    name: str
    revision: int
    query: Query
    tags: tuple[str, ...] = ()  # only items of feeds with one of these tags; empty: all


class WatchMatcher:
    """Watch id -> matched terms for an item, for every watch it matches."""

    def __init__(self, watches: Sequence[ActiveWatch]) -> None:
        self.watches = tuple(watches)
        self._compiled = CompiledWatches({str(w.id): w.query for w in self.watches})
        self._scopes = {w.id: frozenset(w.tags) for w in self.watches if w.tags}

    def __bool__(self) -> bool:
        return bool(self.watches)

    def match_item(self, title: str, summary: str, feed_tags: Iterable[str]) -> dict[int, Terms]:
        found = self._compiled.match_item(title, summary)
        if not found:
            return {}
        matched = {int(key): terms for key, terms in found.items()}
        if self._scopes:
            tags = frozenset(feed_tags)
            matched = {
                watch_id: terms
                for watch_id, terms in matched.items()
                if watch_id not in self._scopes or not self._scopes[watch_id].isdisjoint(tags)
            }
        return matched

    def revisions(self) -> Mapping[int, int]:
        return {w.id: w.revision for w in self.watches}
