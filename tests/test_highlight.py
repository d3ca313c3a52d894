from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.watches.highlight import ELLIPSIS, segments, snippet, term_spans
from listener.watches.query import match, parse_query, tokenize_text


def highlighted(text: str, terms: list[str]) -> list[str]:
    return [text[start:end] for start, end in term_spans(text, terms)]


@pytest.mark.parametrize(
    ("text", "terms", "expected"),
    [
        ("Acme Corp posts record results", ["acme"], ["Acme"]),
        ("ACME’s results", ["acme"], ["ACME"]),
        ("Acmes and Acmeco post results", ["acme"], []),  # whole words only
        ("La Société Générale recrute", ["societe generale"], ["Société Générale"]),
        ("SOCIÉTÉ   GÉNÉRALE : résultats", ["société générale"], ["SOCIÉTÉ   GÉNÉRALE"]),
        ("Générale, société anonyme", ["société générale"], []),  # a phrase keeps its order
        ("L’Oréal annonce", ["l'oréal"], ["L’Oréal"]),
        ("L'OREAL annonce", ["L’Oréal"], ["L'OREAL"]),
        ("Une œuvre, des Œuvres", ["oeuvre"], ["œuvre"]),
        (
            "recrute, recrutement, le recruteur",
            ["recrut*"],
            ["recrute", "recrutement", "recruteur"],
        ),
        ("Nous recrutons", ["recrutement"], []),
        ("La Société Générique", ["société génér*"], ["Société Générique"]),
        ("l'e-commerce grandit", ["e-commerce"], ["e-commerce"]),
        ("Le e commerce grandit", ["e-commerce"], ["e commerce"]),
        ("Ele\u0301ments", ["elements"], ["Ele\u0301ments"]),  # decomposed accent kept inside
        ("Acme™ annonce", ["acme"], []),  # the matcher sees the token "acmetm"
        ("acme, acme", ["acme"], ["acme", "acme"]),  # every occurrence
        ("Acme rachète Globex", ["globex", "acme"], ["Acme", "Globex"]),
        ("Acme Globex", ["acme globex", "globex"], ["Acme Globex"]),  # overlapping merge
        ("Acme", ["", "*", "!!", "-"], []),  # terms without a word are ignored
        ("", ["acme"], []),
    ],
)
def test_term_spans_match_like_the_matcher(text: str, terms: list[str], expected: list[str]):
    assert highlighted(text, terms) == expected


# Terms as match reports them, with a query that reports each one.
TERMS = {
    "acme": "acme",
    "recrut*": "recrut*",
    "société générale": '"société générale"',
    "societe gen*": '"societe gen*"',
    "l'oréal": "l'oréal",
    "e-commerce": "e-commerce",
    "oeuvre": "oeuvre",
    "2024": "2024",
}
WORDS = ["Acme", "ACMES", "Société", "GÉNÉRALE", "générique", "L’Oréal", "l'", "oréal", "œuvre"]
WORDS += ["recrutement", "Recrute", "e-commerce", "E", "commerce", "2024", "Ele\u0301ments"]
SEPARATORS = st.sampled_from([" ", "  ", ", ", "-", "’", "\n", "", "™", "\u0301", "\xad"])
TEXT = st.lists(st.one_of(st.sampled_from(WORDS), SEPARATORS, st.text(max_size=3))).map("".join)


@given(TEXT, st.sampled_from(sorted(TERMS)))
def test_term_spans_find_a_term_exactly_when_the_matcher_does(text: str, term: str):
    matched = match(parse_query(TERMS[term]), tokenize_text(text))
    assert bool(term_spans(text, [term])) == (matched is not None)


@given(st.text())
def test_term_spans_find_every_token_of_the_text(text: str):
    for token in set(tokenize_text(text)):
        assert term_spans(text, [token])


@given(TEXT, st.lists(st.sampled_from(sorted(TERMS)), max_size=3))
def test_highlighted_pieces_hold_a_term(text: str, terms: list[str]):
    queries = [parse_query(TERMS[term]) for term in terms]
    for piece, is_highlighted in segments(text, term_spans(text, terms)):
        if is_highlighted:
            assert any(match(query, tokenize_text(piece)) for query in queries)


@given(st.text(), st.lists(st.text()))
def test_term_spans_are_sorted_disjoint_and_within_the_text(text: str, terms: list[str]):
    spans = term_spans(text, terms)
    for start, end in spans:
        assert 0 <= start < end <= len(text)
    for (_, end), (start, _) in pairwise(spans):
        assert end < start  # adjacent spans are merged too


SPANS = st.lists(st.tuples(st.integers(-5, 60), st.integers(-5, 60)))


@given(st.text(max_size=50), SPANS)
def test_segments_join_back_to_the_text_and_alternate(text: str, spans: list[tuple[int, int]]):
    pieces = segments(text, spans)
    assert "".join(piece for piece, _ in pieces) == text
    assert all(pieces)
    flags = [is_highlighted for _, is_highlighted in pieces]
    assert all(a != b for a, b in pairwise(flags))


def test_segments_mark_the_spans():
    assert segments("Acme rachète Globex", [(13, 19), (0, 4)]) == [
        ("Acme", True),
        (" rachète ", False),
        ("Globex", True),
    ]


LONG = " ".join(f"w{i:02}" for i in range(40))  # 159 characters, 4 per word


@pytest.mark.parametrize(
    ("text", "term", "width", "expected", "shown"),
    [
        ("Acme is short", "acme", 20, "Acme is short", ["Acme"]),  # fits: whole
        (LONG, "w00", 20, "w00 w01 w02 w03 w04…", ["w00"]),
        (LONG, "nothing", 20, "w00 w01 w02 w03 w04…", []),  # no span: the start
        (LONG, "w01", 20, "w00 w01 w02 w03 w04…", ["w01"]),
        (LONG, "w20", 20, "…w19 w20 w21 w22…", ["w20"]),  # context before, cut at words
        (LONG, "w39", 20, "…w35 w36 w37 w38 w39", ["w39"]),  # near the end: window filled
        ("x" * 30 + " Acme", "acme", 10, "…Acme", ["Acme"]),  # no word start before it
        ("Acme" + "x" * 30, "acmexxx*", 10, "Acmexxxxx…", ["Acmexxxxx"]),  # longer: clipped
        (LONG, "w20 w21 w22 w23", 12, "…w20 w21 w2…", ["w20 w21 w2"]),
    ],
)
def test_snippet_shows_the_first_span(
    text: str, term: str, width: int, expected: str, shown: list[str]
):
    window, spans = snippet(text, term_spans(text, [term]), width)
    assert (window, [window[start:end] for start, end in spans]) == (expected, shown)


def test_snippet_keeps_and_clips_the_spans_in_the_window():
    text = "Acme " + "y" * 8 + " Acme Acme" + " z" * 20
    window, spans = snippet(text, [(0, 4), (14, 18), (19, 23), (30, 35)], 24)
    assert window == "Acme yyyyyyyy Acme Acme…"
    assert spans == [(0, 4), (14, 18), (19, 23)]
    window, spans = snippet("Acme Globex Initech", [(5, 19)], 12)
    assert (window, spans) == ("…Globex Ini…", [(1, 11)])


@given(st.text(max_size=80), SPANS, st.integers(-3, 100))
def test_snippet_stays_in_its_width_and_shows_the_first_span(
    text: str, spans: list[tuple[int, int]], width: int
):
    window, shown = snippet(text, spans, width)
    assert len(window) <= max(width, 3)
    if any(max(start, 0) < min(end, len(text)) for start, end in spans):
        assert shown
    core = window.removeprefix(ELLIPSIS).removesuffix(ELLIPSIS)
    assert core in text
    for start, end in shown:
        assert 0 <= start < end <= len(window)
        assert ELLIPSIS not in window[start:end] or ELLIPSIS in text
