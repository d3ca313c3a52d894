"""The classifier a one-shot command gets: checked at start-up, loaded at its first use."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from listener.classify.decision import Prediction
from listener.classify.deferred import DeferredClassifier
from listener.errors import ClassifierError

SHIPPED = Path(__file__).parent.parent / "models" / "classifier.skops"


class Loaded:
    version = json.loads(SHIPPED.with_suffix(".json").read_text())["model_version"]
    labels = ("sales",)

    def predict(self, texts: object, *, explain: bool = False) -> list[Prediction]:
        return [Prediction(("sales",), {"sales": 1.0}, False)]


def test_deferred_classifier_loads_only_when_there_is_text() -> None:
    loads: list[int] = []

    def load() -> Loaded:
        loads.append(1)
        return Loaded()

    classifier = DeferredClassifier(SHIPPED, load)
    assert classifier.version == Loaded.version
    assert classifier.predict([]) == []
    assert (loads, classifier.is_loaded) == ([], False)
    assert len(classifier.predict(["a", "b"])) == 1  # what the loaded model says
    classifier.predict(["c"])
    assert loads == [1]


def test_a_preload_loads_once_on_its_own_thread_and_load_waits_for_it() -> None:
    release = threading.Event()
    loads: list[str] = []

    def slow_load() -> Loaded:
        loads.append(threading.current_thread().name)
        release.wait(10)
        return Loaded()

    classifier = DeferredClassifier(SHIPPED, slow_load)
    classifier.preload()
    classifier.preload()  # a second feed with new bytes: returns at once, loads nothing more
    assert not classifier.is_loaded
    release.set()
    assert len(classifier.predict(["a"])) == 1  # waits for the preload, loads nothing more
    assert loads == ["model-preload"]


def test_a_preload_that_fails_leaves_the_error_to_the_first_prediction() -> None:
    class Other(Loaded):
        version = "another"

    classifier = DeferredClassifier(SHIPPED, Other)
    classifier.preload()
    with pytest.raises(ClassifierError, match="changed while listener ran"):
        classifier.predict(["a"])


def test_deferred_classifier_checks_the_files_at_once(tmp_path: Path) -> None:
    with pytest.raises(ClassifierError, match="not found"):
        DeferredClassifier(tmp_path / "classifier.skops", Loaded)


def test_deferred_classifier_refuses_a_model_replaced_since_start_up() -> None:
    class Other(Loaded):
        version = "another"

    with pytest.raises(ClassifierError, match="changed while listener ran"):
        DeferredClassifier(SHIPPED, Other).predict(["a"])


def test_the_poll_command_imports_no_scikit_learn_before_it_has_items() -> None:
    # Importing scikit-learn, scipy and skops costs a one-shot poll ~1.2 s (issue 14).
    code = (
        "import sys, listener.cli.main, listener.app, listener.jobs.poll;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'skops'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
