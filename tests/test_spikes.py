"""Spike detection: daily windows, the baseline, episodes that open once and close with
hysteresis, the terms that drove a spike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.domain import ALL_FUNCTIONS, SpikeRule
from listener.watches.spikes import (
    OpenEpisode,
    Volume,
    assess,
    check_time,
    daily_counts,
    plan_episodes,
    term_trends,
)

CHECK = datetime(2026, 11, 20, 12, tzinfo=UTC)
RULE = SpikeRule(baseline_days=7, threshold_sd=3.0, min_count=5)


def test_check_time_is_the_hour() -> None:
    assert check_time(CHECK + timedelta(minutes=59, seconds=3)) == CHECK


def test_daily_counts_puts_mentions_in_24_hour_windows_by_function() -> None:
    mentions = [
        (CHECK - timedelta(minutes=1), ("marketing",)),
        (CHECK - timedelta(hours=23, minutes=59), ("marketing", "communication")),
        (CHECK - timedelta(hours=24), ()),  # first instant of yesterday's window
        (CHECK - timedelta(days=7, hours=23), ("other",)),
        (CHECK - timedelta(days=8), ("other",)),  # beyond the baseline
        (CHECK, ("marketing",)),  # the current hour is not over: next check
    ]
    counts = daily_counts(mentions, CHECK, RULE)
    assert counts[ALL_FUNCTIONS] == [2, 1, 0, 0, 0, 0, 0, 1]
    assert counts["marketing"] == [2, 0, 0, 0, 0, 0, 0, 0]
    assert counts["communication"][0] == 1
    assert counts["other"][7] == 1


@pytest.mark.parametrize(
    ("counts", "spike"),
    [
        ([5, 0, 0, 0, 0, 0, 0, 0], True),  # from nothing to the minimum count
        ([4, 0, 0, 0, 0, 0, 0, 0], False),  # under min_count
        ([12, 2, 2, 2, 2, 2, 2, 2], True),
        ([9, 2, 6, 1, 5, 2, 6, 1], False),  # a noisy baseline: 9 is within mean + 3 sd
        ([30, 2, 6, 1, 5, 2, 6, 1], True),
        ([2, 2, 2, 2, 2, 2, 2, 2], False),
    ],
)
def test_a_spike_needs_the_minimum_and_the_threshold(counts: list[int], spike: bool) -> None:
    assert assess(counts, RULE).is_spike(RULE) is spike


def test_assess_uses_the_baseline_mean_and_population_sd() -> None:
    volume = assess([10, 1, 3, 1, 3, 1, 3, 1], SpikeRule(baseline_days=7))
    assert volume.count == 10
    assert volume.mean == pytest.approx(13 / 7)
    assert volume.sd == pytest.approx(0.9897433)
    assert volume.threshold == pytest.approx(13 / 7 + 3 * 0.9897433)


def test_an_episode_opens_once_stays_open_while_high_and_closes_half_way() -> None:
    key = (1, ALL_FUNCTIONS)
    high = Volume(count=20, mean=2.0, sd=1.0, threshold=5.0)
    plan = plan_episodes({key: high}, {}, RULE)
    assert plan.opened == ((key, high),)
    episode = OpenEpisode(mean=2.0, sd=1.0)
    still = plan_episodes({key: Volume(6, 3.0, 2.0, 9.0)}, {key: episode}, RULE)
    assert still.opened == ()
    assert still.updated == ((key, 6),)  # under today's threshold, above the half-way exit
    done = plan_episodes({key: Volume(3, 2.0, 1.0, 5.0)}, {key: episode}, RULE)
    assert done.closed == (key,)


def test_an_episode_of_a_watch_not_assessed_is_left_alone() -> None:
    plan = plan_episodes({}, {(9, "marketing"): OpenEpisode(1.0, 0.0)}, RULE)
    assert plan == plan_episodes({}, {}, RULE)


def test_term_trends_ranks_the_terms_that_rose_most() -> None:
    day_before = CHECK - timedelta(hours=30)
    mentions = [
        *[(CHECK - timedelta(hours=1), ("acme corp",))] * 6,
        *[(CHECK - timedelta(hours=2), ("acme",))] * 3,
        *[(day_before, ("acme",))] * 14,
    ]
    trends = term_trends(mentions, CHECK, RULE)
    assert [(t.term, t.count, t.daily_average) for t in trends] == [
        ("acme corp", 6, 0.0),
        ("acme", 3, 2.0),
    ]


@given(st.lists(st.integers(0, 1000), min_size=2, max_size=15))
def test_a_spike_is_always_above_the_baseline_mean(counts: list[int]) -> None:
    rule = SpikeRule(baseline_days=len(counts) - 1)
    volume = assess(counts, rule)
    if volume.is_spike(rule):
        assert volume.count > volume.mean
        assert volume.count >= rule.min_count
    assert volume.sd >= 0
