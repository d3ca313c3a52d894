"""Pure: a small business / marketing / HR vocabulary in English and French, written for the
benchmark (not taken from any text), and a toy grammar that strings it into sentences.

The sentences are nonsense, but they have the function words, accents and lengths of real
trade-press copy, which is what the parser, the language detector and the full-text index
care about.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lexicon:
    """The words of one language; French nouns carry their gender ("m" or "f")."""

    lang: str
    determiners_m: tuple[str, ...]
    determiners_f: tuple[str, ...]
    nouns: tuple[tuple[str, str], ...]
    adjectives: tuple[tuple[str, str], ...]  # (masculine, feminine); the same twice in English
    verbs: tuple[str, ...]
    prepositions: tuple[str, ...]
    connectors: tuple[str, ...]
    adjective_first: bool


ENGLISH = Lexicon(
    lang="en",
    determiners_m=("the", "our", "this", "every", "a new", "the whole", "their"),
    determiners_f=("the", "our", "this", "every", "a new", "the whole", "their"),
    nouns=tuple(
        (word, "m")
        for word in (
            "brand",
            "campaign",
            "customer",
            "team",
            "market",
            "strategy",
            "pipeline",
            "budget",
            "quarter",
            "revenue",
            "workforce",
            "talent",
            "recruiter",
            "onboarding",
            "payroll",
            "benefit",
            "engagement",
            "retention",
            "audience",
            "launch",
            "partnership",
            "supplier",
            "forecast",
            "dashboard",
            "survey",
            "feedback",
            "headcount",
            "leadership",
            "culture",
            "policy",
            "agency",
            "sponsor",
            "newsletter",
            "webinar",
            "roadmap",
            "margin",
            "channel",
            "shareholder",
            "announcement",
            "merger",
            "acquisition",
            "workplace",
            "manager",
            "employee",
            "candidate",
            "contract",
            "invoice",
            "reputation",
            "press release",
            "stakeholder",
        )
    ),
    adjectives=tuple(
        (word, word)
        for word in (
            "quarterly",
            "strategic",
            "global",
            "digital",
            "hybrid",
            "remote",
            "sustainable",
            "annual",
            "competitive",
            "inclusive",
            "regional",
            "premium",
            "agile",
            "ambitious",
            "measurable",
            "seasonal",
            "flexible",
            "loyal",
            "organic",
            "cross-functional",
        )
    ),
    verbs=(
        "boosts",
        "reshapes",
        "announces",
        "reviews",
        "expands",
        "hires",
        "trains",
        "measures",
        "supports",
        "delivers",
        "launches",
        "rewards",
        "streamlines",
        "doubles",
        "prioritises",
        "outsources",
        "onboards",
        "benchmarks",
        "sponsors",
        "rebrands",
    ),
    prepositions=("for", "with", "across", "despite", "after", "ahead of", "within", "beyond"),
    connectors=("Meanwhile,", "However,", "In addition,", "According to analysts,", "Last week,"),
    adjective_first=True,
)

FRENCH = Lexicon(
    lang="fr",
    determiners_m=("le", "notre", "ce", "chaque", "un nouveau", "leur"),
    determiners_f=("la", "notre", "cette", "chaque", "une nouvelle", "leur"),
    nouns=(
        ("marque", "f"),
        ("campagne", "f"),
        ("client", "m"),
        ("équipe", "f"),
        ("marché", "m"),
        ("stratégie", "f"),
        ("budget", "m"),
        ("trimestre", "m"),
        ("chiffre d'affaires", "m"),
        ("effectif", "m"),
        ("recrutement", "m"),
        ("intégration", "f"),
        ("paie", "f"),
        ("fidélisation", "f"),
        ("audience", "f"),
        ("lancement", "m"),
        ("partenariat", "m"),
        ("fournisseur", "m"),
        ("prévision", "f"),
        ("tableau de bord", "m"),
        ("enquête", "f"),
        ("direction", "f"),
        ("politique", "f"),
        ("agence", "f"),
        ("salarié", "m"),
        ("candidate", "f"),
        ("contrat", "m"),
        ("facture", "f"),
        ("réputation", "f"),
        ("communiqué", "m"),
        ("actionnaire", "m"),
        ("rachat", "m"),
        ("fusion", "f"),
        ("télétravail", "m"),
        ("formation", "f"),
        ("rémunération", "f"),
        ("négociation", "f"),
        ("entreprise", "f"),
        ("événement", "m"),
        ("bien-être", "m"),
    ),
    adjectives=(
        ("stratégique", "stratégique"),
        ("numérique", "numérique"),
        ("hybride", "hybride"),
        ("durable", "durable"),
        ("annuel", "annuelle"),
        ("régional", "régionale"),
        ("compétitif", "compétitive"),
        ("inclusif", "inclusive"),
        ("ambitieux", "ambitieuse"),
        ("européen", "européenne"),
        ("fidèle", "fidèle"),
        ("créatif", "créative"),
        ("social", "sociale"),
        ("premier", "première"),
        ("léger", "légère"),
        ("sécurisé", "sécurisée"),
    ),
    verbs=(
        "renforce",
        "annonce",
        "accélère",
        "révèle",
        "réorganise",
        "recrute",
        "forme",
        "mesure",
        "soutient",
        "lance",
        "récompense",
        "simplifie",
        "double",
        "privilégie",
        "externalise",
        "accueille",
        "compare",
        "parraine",
        "élargit",
        "crée",
    ),
    prepositions=("pour", "avec", "malgré", "après", "avant", "au sein de", "grâce à", "face à"),
    connectors=("Par ailleurs,", "Cependant,", "En outre,", "Selon les analystes,", "Hier,"),
    adjective_first=False,
)

LEXICONS = {"en": ENGLISH, "fr": FRENCH}


def noun_phrase(rng: random.Random, lexicon: Lexicon) -> str:
    """A determiner, a noun and sometimes an adjective, in agreement (French gender)."""
    noun, gender = rng.choice(lexicon.nouns)
    determiners = lexicon.determiners_f if gender == "f" else lexicon.determiners_m
    determiner = rng.choice(determiners)
    if lexicon.lang == "fr" and noun[0] in "aeéiouh":
        determiner = {"le": "l'", "la": "l'", "ce": "cet", "un nouveau": "un nouvel"}.get(
            determiner, determiner
        )
    if rng.random() < 0.5:
        return f"{determiner} {noun}" if determiner != "l'" else f"l'{noun}"
    masculine, feminine = rng.choice(lexicon.adjectives)
    adjective = feminine if gender == "f" else masculine
    if lexicon.adjective_first:
        return f"{determiner} {adjective} {noun}"
    return f"{determiner} {noun} {adjective}" if determiner != "l'" else f"l'{noun} {adjective}"


def sentence(rng: random.Random, lexicon: Lexicon) -> str:
    """One sentence of 6 to 20 words, capitalised, ending with a full stop."""
    parts = [noun_phrase(rng, lexicon), rng.choice(lexicon.verbs), noun_phrase(rng, lexicon)]
    for _ in range(rng.randint(0, 2)):
        parts.append(rng.choice(lexicon.prepositions))
        parts.append(noun_phrase(rng, lexicon))
    text = " ".join(parts)
    if lexicon.lang == "fr":
        text = text.replace(" de le ", " du ").replace(" à le ", " au ")
    if rng.random() < 0.2:
        text = f"{rng.choice(lexicon.connectors)} {text}"
    return text[0].upper() + text[1:] + "."


def title(rng: random.Random, lexicon: Lexicon) -> str:
    """A headline: a short sentence without its full stop."""
    parts = [noun_phrase(rng, lexicon), rng.choice(lexicon.verbs), noun_phrase(rng, lexicon)]
    text = " ".join(parts)
    return text[0].upper() + text[1:]
