"""clean_text, truncate and detect_language: tables of real-world cases plus properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.feeds.language import detect_language, load_language_model
from listener.feeds.text import clean_text, truncate


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("  plain   text\n\twith spaces ", "plain text with spaces"),
        ("<p>One</p><p>Two</p>", "One Two"),
        ("<b>W</b>ord and <a href='x'>link</a>s", "Word and links"),
        ("a<br/>b<br>c", "a b c"),
        ("<script>var x = '<b>no</b>';</script>Text<style>p {}</style>", "Text"),
        ("Before <!-- hidden <b>comment</b> --> after", "Before after"),
        ("Cut <!-- never closed", "Cut"),
        ("Keep <script>unclosed", "Keep"),
        ("<![CDATA[inner <i>text</i>]]>", "inner text"),
        ('Read more <a href="https://example.com/long-u', "Read more"),
        ("caf&eacute; &amp; cr&#232;me &#x2014; &hellip;", "café & crème — …"),
        ("double &amp;eacute;t&amp;eacute;", "double été"),
        ("&lt;p&gt;escaped markup&lt;/p&gt;", "escaped markup"),
        ("&amp;lt;b&amp;gt;twice&amp;lt;/b&amp;gt;", "twice"),
        ("AT&T, R&D and a & b", "AT&T, R&D and a & b"),
        ("x < y > z and 1<2", "x < y > z and 1<2"),
        ("non\u00a0breaking&nbsp;space", "non breaking space"),
        ("soft\u00adhyphen zero\u200bwidth \ufeffbom", "softhyphen zerowidth bom"),
        ("CafÃ© crÃ¨me", "Café crème"),
        ("Lâ€™Ã©tÃ© arrive", "L’été arrive"),
        ("Ã\u00a0 la maison", "à la maison"),
        ("pay.Â\u00a0While", "pay. While"),
        # A no-break space mis-decoded and its \xa0 lost or made a plain space: "Â" is left.
        ("RERÂ A en grève", "RER A en grève"),
        ("RERÂ\u00a0A", "RER A"),
        ("20Â€ ou 25 Â€", "20 € ou 25 €"),
        ("100Â % en ligneÂ ; venezÂ ! «Â oui Â»", "100 % en ligne ; venez ! « oui »"),
        ("CHÂTEAU, Âge, Âme", "CHÂTEAU, Âge, Âme"),  # a real Â is a letter: left alone
        ("don\x92t", "don’t"),
        ("Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "привет"),
        ("Noe\u0308l", "Noël"),  # NFD becomes NFC
        ("ctrl\x00\x07chars", "ctrlchars"),
    ],
)
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Un texte déjà propre : « déjà vu », naïve, Noël, l’été, 5 €.",
        "Grüße aus München, Ærøskøbing, São Paulo, España, Þingvellir.",
        "ÉTÉ\u00a0! Ça va ? Ô rage ! Île-de-France",
        "Кириллица, ελληνικά, 中文, اردو, ಕನ್ನಡ",
        "Emoji 👍🏽 and ZWJ 👩\u200d💻 stay",
    ],
)
def test_clean_text_leaves_clean_text_alone(text: str) -> None:
    assert clean_text(text) == " ".join(text.split())


def test_clean_text_truncates_long_text_before_repairing_it() -> None:
    article = "<p>" + "Lâ€™Ã©tÃ© arrive. " * 2000 + "</p>"
    text = clean_text(article, max_chars=100)
    assert len(text) <= 100
    assert text.startswith("L’été arrive. L’été")
    assert text.endswith("…")


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [
        ("short", 10, "short"),
        ("exactly ten", 11, "exactly ten"),
        ("one two three four", 16, "one two three…"),  # a space near the end: cut there
        ("one two three four", 12, "one two thr…"),  # none near the end: cut the word
        ("averyveryverylongword", 8, "averyve…"),
        ("abc", 1, "a"),
        ("abc", 0, ""),
    ],
)
def test_truncate(text: str, max_chars: int, expected: str) -> None:
    assert truncate(text, max_chars) == expected


MARKUP = st.sampled_from(
    ["<p>", "</p>", "<b>", "</b>", "<br/>", "<a href='x'>", "</a>", "<!--", "-->", "<script>",
     "</script>", "&amp;", "&lt;", "&gt;", "&eacute;", "&#233;", "&nbsp;", "<", ">", "&", ";",
     "Ã©", "â€™", "Â\u00a0", "\u00ad", "\u00a0", " ", "\n"]
)  # fmt: skip
HTMLISH = st.lists(st.one_of(MARKUP, st.text(max_size=8)), max_size=30).map("".join)
TAG = re.compile(r"<[a-zA-Z/!?][^<>]*>")


@settings(max_examples=500, deadline=None)
@given(HTMLISH, st.one_of(st.none(), st.integers(min_value=1, max_value=60)))
def test_clean_text_is_idempotent(raw: str, max_chars: int | None) -> None:
    once = clean_text(raw, max_chars)
    assert clean_text(once, max_chars) == once
    assert once == " ".join(once.split())
    assert max_chars is None or len(once) <= max_chars


@settings(max_examples=300, deadline=None)
@given(HTMLISH)
def test_clean_text_leaves_no_tag(raw: str) -> None:
    assert not TAG.search(clean_text(raw))


WORDS = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzé", min_size=1, max_size=8), max_size=12
)


@given(WORDS, st.lists(st.sampled_from(["p", "b", "a", "div", "span", "li", "em", "h1"])))
def test_clean_text_strips_tags_around_words(words: list[str], tags: list[str]) -> None:
    html = "".join(f"<{tag} class='c'>" for tag in tags) + " ".join(words)
    html += "".join(f"</{tag}>" for tag in reversed(tags))
    text = clean_text(html)
    assert text == " ".join(words)
    assert not any(f"<{tag}" in text for tag in tags)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Acme recalls 2,000 kettles after customer complaints about faulty lids", "en"),
        ("Cinq conseils pour réussir vos entretiens de recrutement cette année", "fr"),
        ("Die Gewerkschaft fordert mehr Lohn für alle Beschäftigten im Handel", "de"),
        ("El gobierno anuncia una reforma del sistema de pensiones para el año próximo", "es"),
        ("OK", None),
        ("", None),
        ("12345 67890 !!! ??? 2026-11-26", None),
        ("ACME RECALLS KETTLES AFTER COMPLAINTS FROM CUSTOMERS", "en"),
    ],
)
def test_detect_language(text: str, language: str | None) -> None:
    load_language_model()  # idempotent: the model loads once per process
    assert detect_language(text) == language


@given(st.text(max_size=300))
def test_detect_language_answers_a_two_letter_code_or_none(text: str) -> None:
    language = detect_language(text)
    assert language is None or re.fullmatch("[a-z]{2}", language)
