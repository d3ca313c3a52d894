"""A tiny hand-written labelled corpus and the model trained on it, shared by the model tests."""

from __future__ import annotations

import functools
from typing import Any

from listener.classify.training import LabelledRow, train_classifier

# (lang, labels, title, summary): four rows per language and label, written for these tests.
TINY = [
    (
        "en",
        "marketing",
        "Spring campaign launches on social media",
        "New ads and influencer posts promote the brand.",
    ),
    (
        "en",
        "marketing",
        "How to improve your SEO and content marketing",
        "Keywords, blog posts and newsletters that convert.",
    ),
    (
        "en",
        "marketing",
        "Brand unveils loyalty promotion for summer",
        "Discount codes and a TV advertising push.",
    ),
    (
        "en",
        "marketing",
        "Email marketing tips for product launches",
        "Segment your audience and test subject lines.",
    ),
    (
        "en",
        "communication",
        "Company issues press release on new CEO",
        "The statement was sent to journalists this morning.",
    ),
    (
        "en",
        "communication",
        "Spokesperson responds to media reports",
        "The press office published a corporate statement.",
    ),
    (
        "en",
        "communication",
        "Crisis communication after the factory fire",
        "Executives held a press conference with reporters.",
    ),
    (
        "en",
        "communication",
        "Internal newsletter relaunched for staff",
        "The communications team will brief the press too.",
    ),
    (
        "en",
        "human_resources",
        "We are hiring a senior recruiter",
        "Join our talent acquisition team and help us hire.",
    ),
    (
        "en",
        "human_resources",
        "Employees win pay rise after union talks",
        "Workers and the union agreed on wages and training.",
    ),
    (
        "en",
        "human_resources",
        "Onboarding new hires in a remote workplace",
        "HR teams share tips on culture and employee training.",
    ),
    (
        "en",
        "human_resources",
        "Job interview questions recruiters ask",
        "Candidates should prepare for the hiring process.",
    ),
    (
        "en",
        "customer_service",
        "Customers report outage of the mobile app",
        "Support says the service will be restored soon.",
    ),
    (
        "en",
        "customer_service",
        "How our help desk answers complaints faster",
        "Customer support agents now reply within an hour.",
    ),
    (
        "en",
        "customer_service",
        "Refund policy updated after customer complaints",
        "The support centre explains how to get a refund.",
    ),
    (
        "en",
        "customer_service",
        "Call centre wait times fall",
        "Customer experience scores improve as support hires.",
    ),
    (
        "en",
        "business_intelligence",
        "Quarterly results beat analyst forecasts",
        "Revenue grew 12% and market share increased.",
    ),
    (
        "en",
        "business_intelligence",
        "Market research report on the retail sector",
        "The study ranks competitors by growth and revenue.",
    ),
    (
        "en",
        "business_intelligence",
        "Rival acquires startup in merger deal",
        "The acquisition strengthens its competitive position.",
    ),
    (
        "en",
        "business_intelligence",
        "Industry trends: market forecast for 2027",
        "Analysts expect the market to grow in every region.",
    ),
    ("en", "other", "Heavy rain expected this weekend", "Forecasters warn of floods in the north."),
    (
        "en",
        "other",
        "Local team wins the football final",
        "Fans celebrated the victory late into the night.",
    ),
    ("en", "other", "A recipe for apple pie", "Bake the apples with cinnamon for forty minutes."),
    (
        "en",
        "other",
        "Museum opens a dinosaur exhibition",
        "Children can see fossils and skeletons.",
    ),
    (
        "fr",
        "marketing",
        "Nouvelle campagne publicitaire sur les réseaux sociaux",
        "La marque mise sur les influenceurs et la publicité.",
    ),
    (
        "fr",
        "marketing",
        "Comment améliorer son référencement et son contenu",
        "Mots-clés, articles de blog et newsletters.",
    ),
    (
        "fr",
        "marketing",
        "La marque lance une promotion pour l'été",
        "Codes de réduction et publicité à la télévision.",
    ),
    (
        "fr",
        "marketing",
        "Marketing par e-mail : conseils pour un lancement",
        "Segmentez votre audience et testez vos objets.",
    ),
    (
        "fr",
        "communication",
        "L'entreprise publie un communiqué de presse",
        "La déclaration a été envoyée aux journalistes.",
    ),
    (
        "fr",
        "communication",
        "Le porte-parole répond aux médias",
        "Le service de presse a publié un communiqué officiel.",
    ),
    (
        "fr",
        "communication",
        "Communication de crise après l'incendie de l'usine",
        "La direction a tenu une conférence de presse.",
    ),
    (
        "fr",
        "communication",
        "La lettre interne relancée pour les salariés",
        "L'équipe communication informe aussi la presse.",
    ),
    (
        "fr",
        "human_resources",
        "Nous recrutons un chargé de recrutement",
        "Rejoignez notre équipe RH et aidez-nous à recruter.",
    ),
    (
        "fr",
        "human_resources",
        "Les salariés obtiennent une hausse des salaires",
        "Les syndicats et la direction signent un accord.",
    ),
    (
        "fr",
        "human_resources",
        "Intégrer les nouvelles recrues en télétravail",
        "Les équipes RH partagent leurs conseils de formation.",
    ),
    (
        "fr",
        "human_resources",
        "Entretien d'embauche : les questions des recruteurs",
        "Les candidats doivent préparer le recrutement.",
    ),
    (
        "fr",
        "customer_service",
        "Les clients signalent une panne de l'application",
        "Le service client annonce un rétablissement rapide.",
    ),
    (
        "fr",
        "customer_service",
        "Comment notre service client traite les réclamations",
        "Les conseillers répondent en moins d'une heure.",
    ),
    (
        "fr",
        "customer_service",
        "Remboursement : nouvelle politique après des réclamations",
        "Le service client explique la démarche.",
    ),
    (
        "fr",
        "customer_service",
        "Le temps d'attente au centre d'appels baisse",
        "La satisfaction client progresse.",
    ),
    (
        "fr",
        "business_intelligence",
        "Les résultats trimestriels dépassent les prévisions",
        "Le chiffre d'affaires progresse de 12 %.",
    ),
    (
        "fr",
        "business_intelligence",
        "Étude de marché sur le secteur de la distribution",
        "Le rapport classe les concurrents par croissance.",
    ),
    (
        "fr",
        "business_intelligence",
        "Un concurrent rachète une start-up",
        "L'acquisition renforce sa position sur le marché.",
    ),
    (
        "fr",
        "business_intelligence",
        "Tendances du secteur : prévisions du marché",
        "Les analystes attendent une croissance du marché.",
    ),
    (
        "fr",
        "other",
        "Fortes pluies attendues ce week-end",
        "Les prévisionnistes annoncent des inondations.",
    ),
    (
        "fr",
        "other",
        "L'équipe locale remporte la finale de football",
        "Les supporters ont fêté la victoire.",
    ),
    (
        "fr",
        "other",
        "Une recette de tarte aux pommes",
        "Faites cuire les pommes avec de la cannelle.",
    ),
    (
        "fr",
        "other",
        "Le musée ouvre une exposition sur les dinosaures",
        "Les enfants découvrent des fossiles.",
    ),
]


def tiny_rows() -> list[LabelledRow]:
    return [
        LabelledRow(f"{lang}-{number:03}", lang, tuple(labels.split(";")), title, summary)
        for number, (lang, labels, title, summary) in enumerate(TINY)
    ]


def train_tiny() -> tuple[Any, dict[str, Any]]:
    """A fresh training on the tiny corpus (threshold tuning with 3 folds)."""
    return train_classifier(tiny_rows(), threshold_folds=3)


@functools.cache
def tiny_model() -> tuple[Any, dict[str, Any]]:
    """The tiny model, trained once per test session."""
    return train_tiny()
