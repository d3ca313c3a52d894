"""Pure: invented watches, and items that mention them, for the watches section.

The 50 watches are drawn (by the seed) from name pools written for the benchmark: brands,
competitors and people that do not exist (Vendrelle, Orbiscope, Ysolde Garrimond...) and
a few topics on bench/words.py's vocabulary. Their queries mix the forms of the language:

word 8      vendrelle                      phrase 6   "orbiscope labs", "ysolde garrimond"
or 5        korvane OR "korvane group"     and 5      pellumor (launch OR lancement)
not 5       marvessa NOT ("marvessa lake" OR hôtel)   near 5   ilvenor NEAR/5 (partnership OR ...)
prefix 4    draxom*, "velquin ana"*        scoped 4   a word, only in feeds tagged competitors...
accented 5  "Société Brévanne", Cœurvalle, "L'Atelier Ombréval" (written, UPPER, unaccented, ’)
topic 3     recrut* NEAR/2 candidate* and two of "remote workforce" OR ...: bench/words.py's
            words, which the generated text holds (no mention is injected)

Each non-topic watch knows texts that mention it (`mentions`, which its query must match
wherever they are put) and near misses (`misses`: the excluded words of a NOT, a NEAR too far
apart, a phrase in the wrong order). `make_bench_items` puts one of them into a fraction of
bench/texts.py's items, as a sentence of the summary or the start of the title.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

from bench.digest_db import TOPIC_TAGS
from bench.texts import make_items

FORM_MIX = (
    ("word", 8),
    ("phrase", 6),
    ("or", 5),
    ("and", 5),
    ("not", 5),
    ("near", 5),
    ("prefix", 4),
    ("scoped", 4),
    ("accented", 5),
    ("topic", 3),
)
WATCH_COUNT = sum(count for _, count in FORM_MIX)  # 50
# Invented for the benchmark; any resemblance to a real name is accidental.
BRANDS = (
    "Vendrelle", "Orbiscope", "Korvane", "Pellumor", "Zentriqa", "Marvessa", "Ostravel",
    "Lunefar", "Draxomi", "Velquin", "Thessmark", "Ombrelis", "Sarvocat", "Ilvenor",
    "Prundell", "Gavrolux", "Nimbrel", "Falquera", "Ystrade", "Corvanta", "Quennowin",
    "Tarrivel", "Brisquet", "Holmvane", "Aldrevik", "Cendrapo", "Wexmoor", "Jolvasse",
    "Rimbaltis", "Kestravon", "Moravique", "Plenthos", "Uvarelle", "Sombrik", "Trevallon",
    "Glimmerash", "Fennigar", "Zolbrecht", "Averlune", "Pixorra", "Drumvale", "Quorlith",
    "Sennavar", "Blethmore", "Orvantis", "Calvisse", "Trombelle", "Hexaloam",
)  # fmt: skip
PERSONS = (
    "Ysolde Garrimond", "Odran Pelletrix", "Ambrine Costevaux", "Jorvik Tallemand",
    "Tamsin Holloberry", "Casimir Vontrelle",
)  # fmt: skip
PHRASE_SUFFIXES = ("Labs", "Group", "Systems", "Partners", "Analytics")
# (query, the name the mentions use); written with accents, an œ and an apostrophe
ACCENTED = (
    ('"Société Brévanne"', "Société Brévanne"),
    ('"Crédit Olvérac" OR Olvérac', "Crédit Olvérac"),
    ('"Maison Élarène"', "Maison Élarène"),
    ("Cœurvalle", "Cœurvalle"),
    ('"L\'Atelier Ombréval"', "L'Atelier Ombréval"),
    ('"Maëlis Vantorre"', "Maëlis Vantorre"),
    ('"Hôtellerie Quénard" OR Quénard', "Hôtellerie Quénard"),
)
# (query part, mentions with {n} for the name): the other side of an AND
AND_TERMS = (
    ("(launch OR lancement)", ("{n} confirms the launch", "Lancement réussi pour {n}")),
    ("recrut*", ("{n} recrute", "le recrutement chez {n}")),
    ("(partnership OR partenariat)", ("{n} signs a partnership", "{n} annonce un partenariat")),
    ("(merger OR fusion)", ("the merger with {n}", "{n} prépare une fusion")),
)
NEAR_TERMS = ("(partnership OR partenariat OR contract)", "(lawsuit OR procès OR recall)")
NEAR_WORDS = ("partnership", "partenariat", "contract", "lawsuit", "procès", "recall")
# Words between the name and the NEAR term in a near miss: none of the query's words.
FILLER = "said on Tuesday that after many months of talks it would finally sign a new"
EXCLUDED = (("Lake", "hôtel"), ("River", "festival"), ("Park", "restaurant"))
# Each matches 2-7% of bench/texts.py's items (100-400 words). The first is always drawn:
# its prefixes inside a NEAR take a path of their own (every token tried against them).
TOPICS = (
    ("recrut* NEAR/2 candidate*", "recruiting"),
    ('"remote workforce" OR "hybrid workplace" OR "télétravail hybride"', "hybrid work"),
    ("(merger OR rachat) NEAR/3 (shareholder OR actionnaire)", "M&A"),
    ('"sustainable supplier" OR "fournisseur durable"', "sustainable sourcing"),
    ('"inclusive workplace" OR "politique inclusive"', "inclusion"),
    ('("digital campaign" OR "campagne numérique") NOT newsletter', "digital campaigns"),
)


@dataclass(frozen=True, slots=True)
class BenchWatch:
    name: str
    kind: str
    query: str
    form: str
    tags: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()  # texts the query matches, wherever they are put
    misses: tuple[str, ...] = ()  # texts close to a mention that it does not match alone


@dataclass(frozen=True, slots=True)
class BenchItem:
    lang: str
    title: str
    summary: str
    feed_tags: tuple[str, ...]
    watch: int | None = None  # index of the watch whose mention or near miss was put in
    # True: the watch must match the item; False: it must not (a near miss, a mention out
    # of the watch's scope); None: either (nothing put in, or a NEAR miss, which the words
    # around it may complete)
    expected: bool | None = None


def make_watches(seed: int) -> list[BenchWatch]:
    """WATCH_COUNT watches, the same for the same seed."""
    rng = random.Random(f"{seed}:watches")
    brands = rng.sample(BRANDS, len(BRANDS))
    persons = rng.sample(PERSONS, len(PERSONS))
    accented = rng.sample(ACCENTED, len(ACCENTED))
    topics = [*rng.sample(TOPICS[1:], len(TOPICS) - 1), TOPICS[0]]  # popped first
    watches = []
    for form, count in FORM_MIX:
        for index in range(count):
            if form == "phrase" and index % 2:
                watches.append(_person(persons.pop()))
            elif form == "accented":
                watches.append(_accented(*accented.pop()))
            elif form == "topic":
                query, name = topics.pop()
                watches.append(BenchWatch(f"topic: {name}", "topic", query, form))
            else:
                watches.append(_brand_watch(rng, form, brands.pop()))
    return watches


def _brand_watch(rng: random.Random, form: str, name: str) -> BenchWatch:
    kind = rng.choice(("brand", "competitor"))
    cases = (name, name.upper(), name.lower())
    if form == "word":
        return BenchWatch(name, kind, name.lower(), form, mentions=cases)
    if form == "scoped":
        tags = tuple(sorted(rng.sample(TOPIC_TAGS, rng.randint(1, 2))))
        return BenchWatch(name, "competitor", name, form, tags, mentions=cases)
    if form == "phrase":
        full = f"{name} {rng.choice(PHRASE_SUFFIXES)}"
        return BenchWatch(
            full, kind, f'"{full}"', form, mentions=(full, full.upper()), misses=(name,)
        )
    if form == "or":
        suffix = rng.choice(PHRASE_SUFFIXES)
        typo = name[:-1] + name[-1] * 2
        query = f'{name} OR "{name} {suffix}" OR {typo.lower()}'
        return BenchWatch(name, kind, query, form, mentions=(name, f"{name} {suffix}", typo))
    if form == "and":
        other, mentions = rng.choice(AND_TERMS)
        query = f"{name} AND {other}" if rng.random() < 0.5 else f"{name} {other}"
        return BenchWatch(
            name, kind, query, form, mentions=tuple(m.format(n=name) for m in mentions)
        )
    if form == "not":
        place, word = rng.choice(EXCLUDED)
        query = f'{name} NOT ("{name} {place}" OR {word})'
        return BenchWatch(
            name,
            kind,
            query,
            form,
            mentions=cases,
            misses=(f"{name} {place}", f"le {word} {name}"),
        )
    if form == "near":
        distance = rng.choice((3, 5, 8))
        query = f"{name} NEAR/{distance} {rng.choice(NEAR_TERMS)}"
        word = next(w for w in NEAR_WORDS if w in query)
        filler = " ".join(FILLER.split()[: distance + 1])  # distance + 2 tokens apart: too far
        return BenchWatch(
            name,
            kind,
            query,
            form,
            mentions=(f"{name} and its {word}", f"the {word} that {name.upper()} won"),
            misses=(f"{name} {filler} {word}",),
        )
    # prefix: the name cut after 5+ letters, or a phrase with its last word cut
    if rng.random() < 0.5:
        stem = name[: rng.randint(5, len(name) - 1)]
        mentions = (name, f"{stem}ia", f"{stem.upper()}S")
        return BenchWatch(name, kind, f"{stem}*", form, mentions=mentions, misses=(stem[:-1],))
    suffix = rng.choice(PHRASE_SUFFIXES)
    query = f'"{name} {suffix[:3]}"*'
    return BenchWatch(
        name, kind, query, form, mentions=(f"{name} {suffix}", f"{name} {suffix[:3]}")
    )


def _person(name: str) -> BenchWatch:
    first, last = name.split()
    return BenchWatch(
        name,
        "person",
        f'"{name}"',
        "phrase",
        mentions=(name, name.upper(), f"{first} {last}’s"),
        misses=(f"{last} {first}", last),
    )


def _accented(query: str, name: str) -> BenchWatch:
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)
    ).replace("œ", "oe")
    mentions = (name, name.upper(), plain, name.replace("'", "’"), plain.lower())
    kind = "person" if name.startswith("Maëlis") else "brand"
    return BenchWatch(name, kind, query, "accented", mentions=tuple(dict.fromkeys(mentions)))


def make_bench_items(
    seed: int,
    watches: list[BenchWatch],
    per_lang: int,
    summary_words: tuple[int, int],
    mention_fraction: float,
    miss_share: float = 0.2,
) -> list[BenchItem]:
    """`per_lang` English then French items; `mention_fraction` of them get one mention of a
    watch (or, `miss_share` of those, one of its near misses)."""
    rng = random.Random(f"{seed}:watch-items")
    mentioned = [index for index, watch in enumerate(watches) if watch.mentions]
    items = []
    for lang in ("en", "fr"):
        for title, summary in make_items(seed, lang, per_lang, *summary_words):
            topics = rng.sample(TOPIC_TAGS, rng.randint(1, 2))
            tags = (lang, *sorted(topics))
            if rng.random() >= mention_fraction:
                items.append(BenchItem(lang, title, summary, tags))
                continue
            index = rng.choice(mentioned)
            watch = watches[index]
            is_miss = bool(watch.misses) and rng.random() < miss_share
            text = rng.choice(watch.misses if is_miss else watch.mentions)
            if rng.random() < 0.25:
                title = f"{text}: {title}"
            else:
                sentences = summary.split(". ")
                sentences.insert(rng.randint(0, len(sentences) - 1), text)  # before one
                summary = ". ".join(sentences)
            in_scope = not watch.tags or bool(set(watch.tags) & set(tags))
            expected = None if is_miss and watch.form == "near" else in_scope and not is_miss
            items.append(BenchItem(lang, title, summary, tags, index, expected))
    return items
