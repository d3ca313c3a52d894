"""The scikit-learn-free scorer: the same n-grams, columns and probabilities as the pipeline,
read from the .npz that `make model` writes, refused when it does not match its metadata."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer

from listener.classify.deferred import runtime_path
from listener.classify.linear import (
    Branch,
    load_runtime_classifier,
    scorer_bytes,
    scorer_from_bytes,
)
from listener.classify.model import item_text, load_classifier, scorer_from_pipeline
from listener.classify.training import save_classifier
from listener.errors import ClassifierError
from tests.classifier_data import tiny_model

ROOT = Path(__file__).parent.parent
COMMITTED_MODEL = ROOT / "models" / "classifier.skops"

# Letters with and without accents, apostrophes, digits, runs of white space, one-letter
# words: what changes n-grams.
TEXT = st.text(alphabet=st.sampled_from(list("aAbxéÉçœ'’-1 \t\n.日")), max_size=60)


@pytest.mark.parametrize(
    ("analyzer", "ngram_range"), [("word", (1, 2)), ("char_wb", (5, 5)), ("char_wb", (2, 4))]
)
@given(text=TEXT)
def test_ngrams_are_scikit_learns(analyzer: str, ngram_range: tuple[int, int], text: str) -> None:
    branch = Branch("b", analyzer, ngram_range, np.ones(8, np.float32), True, True, 0)
    hasher = HashingVectorizer(analyzer=analyzer, ngram_range=ngram_range)
    assert branch.ngrams(text) == hasher.build_analyzer()(text)


def training_texts(limit: int) -> list[str]:
    rows: list[dict[str, str]] = []
    for name in ("labelled_en.csv", "labelled_fr.csv", "labelled_fr_feeds.csv"):
        with (ROOT / "models" / "training" / name).open(encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    return [item_text(row["title"], row["summary"]) for row in rows[:: max(1, len(rows) // limit)]]


def test_the_committed_npz_scores_as_the_pipeline_does() -> None:
    runtime = load_runtime_classifier(COMMITTED_MODEL)
    assert runtime is not None
    assert runtime.pipeline is None, "read without scikit-learn's pipeline"
    pipeline = load_classifier(COMMITTED_MODEL)
    texts = [*training_texts(400), "", "   ", "Ça va ? 日本"]
    got, _ = runtime.scorer.probabilities(texts)
    np.testing.assert_allclose(got, pipeline.pipeline.predict_proba(texts), atol=1e-5)
    assert runtime.predict(texts, explain=True) == pipeline.predict(texts, explain=True)
    assert runtime.version == pipeline.version


def test_the_committed_npz_is_what_the_pipeline_gives() -> None:
    pipeline = load_classifier(COMMITTED_MODEL).pipeline
    assert runtime_path(COMMITTED_MODEL).read_bytes() == scorer_bytes(
        scorer_from_pipeline(pipeline)
    ), "run `make model`"


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "classifier.skops"
    save_classifier(*tiny_model(), path)
    return path


def test_saving_writes_the_npz_and_its_checksum(saved: Path) -> None:
    metadata = json.loads(saved.with_suffix(".json").read_text())
    data = runtime_path(saved).read_bytes()
    assert metadata["runtime_sha256"] == hashlib.sha256(data).hexdigest()
    scorer = scorer_from_bytes(data)
    assert scorer_bytes(scorer) == data, "the bytes are reproducible"


def test_an_npz_of_another_training_is_refused(saved: Path) -> None:
    scorer = scorer_from_bytes(runtime_path(saved).read_bytes())
    other = dataclasses.replace(scorer, intercepts=scorer.intercepts + 1.0)
    runtime_path(saved).write_bytes(scorer_bytes(other))
    with pytest.raises(ClassifierError, match="checksum differs"):
        load_runtime_classifier(saved)


def test_an_npz_that_is_not_a_scorer_is_refused(saved: Path) -> None:
    runtime_path(saved).write_bytes(b"PK not really")
    rewrite(saved, runtime_sha256=hashlib.sha256(b"PK not really").hexdigest())
    with pytest.raises(ClassifierError, match="not a listener scorer"):
        load_runtime_classifier(saved)


def test_a_model_saved_without_an_npz_is_read_from_its_pipeline(saved: Path) -> None:
    metadata = json.loads(saved.with_suffix(".json").read_text())
    del metadata["runtime_sha256"]
    saved.with_suffix(".json").write_text(json.dumps(metadata))
    runtime_path(saved).unlink()
    assert load_runtime_classifier(saved) is None
    code = (
        "import sys; from pathlib import Path; from listener.app import load_model;"
        "from listener.config import parse_settings;"
        f"s = parse_settings({{'classifier': {{'model_path': {str(saved)!r}}}}}, {{}});"
        "print(load_model(s).predict(['Nous recrutons'])[0].labels)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def rewrite(path: Path, **changes: Any) -> None:
    metadata_path = path.with_suffix(".json")
    metadata = json.loads(metadata_path.read_text())
    metadata.update(changes)
    metadata_path.write_text(json.dumps(metadata))


def test_classifying_with_the_shipped_model_imports_no_scikit_learn() -> None:
    # scikit-learn, scipy and skops: ~1.2 s of imports and ~100 MB per process (issue 14).
    code = (
        "import sys; from listener.app import load_model; from listener.config import "
        "parse_settings; c = load_model(parse_settings({}, {}));"
        "print(c.predict(['We are hiring engineers'])[0].labels);"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'skops'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
