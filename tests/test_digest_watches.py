"""The digest's watch sections: counts and change, split by function, top mentions with
highlighted terms, share of voice; rendered safely in both parts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from listener.digest.build import build_digest, is_empty
from listener.digest.watches import followed_watches, share_of_voice, with_watches
from listener.domain import DigestData, Recipient, Watch
from listener.render.digest import render_digest
from tests.test_digest import PERIOD, TEAM, WHEN, make_item

ACME = Watch("acme", "acme", kind="brand")
GLOBEX = Watch("globex", "globex", kind="competitor")
CEO = Watch("jane", '"jane doe"', kind="person")


def digest_of(data: DigestData, recipient: Recipient = TEAM):  # type: ignore[no-untyped-def]
    return with_watches(build_digest(recipient, PERIOD, data), data)


def watch_data(**changes: object) -> DigestData:
    items = (
        make_item(1, ("marketing",), title="Acme launches a new brand campaign"),
        make_item(2, ("communication",), title="Acme CEO interview on the crisis"),
        make_item(3, uncertain=True, scores={"other": 0.3}, title="Acme and Globex merge talks"),
        make_item(4, ("marketing",), title="Globex summer ads are everywhere today"),
        make_item(5, ("marketing",), title="Unrelated news of the day for everyone"),
    )
    base = DigestData(
        items=items,
        daily_counts={},
        unhealthy_feeds=(),
        watches=(ACME, GLOBEX),
        mentions={
            1: {"acme": ("acme",)},
            2: {"acme": ("acme",)},
            3: {"acme": ("acme",), "globex": ("globex",)},
            4: {"globex": ("globex",)},
        },
        watch_daily_counts={"acme": (1, 2, 1, 2, 1, 2, 5), "globex": (0,) * 7},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_followed_watches_orders_brands_then_competitors_people_topics() -> None:
    watches = [Watch("t", "t", kind="topic"), CEO, GLOBEX, ACME]
    assert [w.name for w in followed_watches(TEAM, watches)] == ["acme", "globex", "jane", "t"]
    only = replace(TEAM, watches=("globex",))
    assert followed_watches(only, watches) == (GLOBEX,)


def test_watch_section_counts_change_and_split_by_function() -> None:
    digest = digest_of(watch_data())
    acme, globex = digest.watches
    assert (acme.name, acme.count, acme.previous_daily_average) == ("acme", 3, 2.0)
    assert acme.change_pct == 50.0
    assert acme.by_function == (("marketing", 1), ("communication", 1), ("uncertain", 1))
    assert globex.count == 2
    assert globex.change_pct is None  # nothing the week before
    assert [m.story.lead.item_id for m in acme.mentions] == [1, 2, 3]
    assert acme.mentions[0].terms == ("acme",)


def test_top_mentions_are_capped_and_the_rest_counted() -> None:
    digest = digest_of(watch_data(), replace(TEAM, items_per_section=1))
    assert len(digest.watches[0].mentions) == 1
    assert digest.watches[0].hidden == 2


def test_mentions_in_the_title_rank_before_mentions_in_the_summary() -> None:
    summary_only = replace(make_item(7, ("marketing",)), summary="a word on acme")
    later = replace(
        make_item(8, ("marketing",), title="Acme opens an office in Lyon"),
        published_at=WHEN - timedelta(hours=3),
    )
    data = watch_data(
        items=(summary_only, later), mentions={7: {"acme": ("acme",)}, 8: {"acme": ("acme",)}}
    )
    (acme, _) = digest_of(data).watches
    assert [m.story.lead.item_id for m in acme.mentions] == [8, 7]


def test_share_of_voice_among_brands_and_competitors() -> None:
    digest = digest_of(watch_data())
    assert [(v.name, v.count, round(v.share, 2)) for v in digest.share_of_voice] == [
        ("acme", 3, 0.6),
        ("globex", 2, 0.4),
    ]
    one = digest_of(watch_data(watches=(ACME, CEO)))
    assert one.share_of_voice == ()  # a single brand has no one to share with
    assert share_of_voice(()) == ()


def test_a_digest_with_only_mentions_is_not_empty() -> None:
    quiet = replace(TEAM, functions=("human_resources",))
    digest = digest_of(watch_data(), quiet)
    assert all(not section.stories for section in digest.sections)
    assert not is_empty(digest)


def test_rendered_watch_section_highlights_terms_and_escapes_feed_text() -> None:
    evil = make_item(9, ("marketing",), title="<b>Acme</b> & <script>x()</script>")
    data = watch_data(items=(evil,), mentions={9: {"acme": ("acme",)}})
    message = render_digest(digest_of(data), sender="l <l@example.com>", generated_at=WHEN)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert '&lt;b&gt;<span style="background-color:#fef08a;color:#111827;">Acme</span>' in html
    assert "<script>" not in html
    assert "Share of voice" in html
    assert "ACME (brand, 1 mention" in text
    assert "<b>*Acme*</b> & <script>x()</script>" in text
    assert "Share of voice: acme 100% (1) | globex 0% (0)" in text
