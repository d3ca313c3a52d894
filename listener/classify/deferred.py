"""I/O: the model's files read and checked without scikit-learn, and a classifier that
loads the model only when it is first asked to predict.

A one-shot `listener poll` whose feeds are all unchanged has nothing to classify. Loading
the model was ~1.2 s of scikit-learn imports before it scored from its .npz arrays
(listener.classify.linear, ~30 ms); a model saved without them still loads its .skops
pipeline, and a poll starts that load on a thread when the first new bytes arrive. The cheap
checks (files present, metadata matching this listener and this scikit-learn, the
artifact's checksum) run at start-up, so a wrong model fails there as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from listener.classify.decision import (
    Classifier,
    Prediction,
    check_metadata,
    missing_model_hint,
    retrain_hint,
)
from listener.domain import LABELS
from listener.errors import ClassifierError


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """Where a loaded model came from: enough for another process to load the same one."""

    path: Path  # the .skops path; the .json and .npz are beside it
    uncertain_below: float | None = None


def runtime_path(model_path: Path) -> Path:
    """The model's arrays for scoring without scikit-learn (listener.classify.linear)."""
    return model_path.with_suffix(".npz")


def model_file_version(model_path: Path) -> str | None:
    """The version the model file holds now, from its .json (cheap: the artifact is not
    read); None when that cannot be read, which loading the model then reports."""
    try:
        metadata = json.loads(model_path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = metadata.get("model_version") if isinstance(metadata, dict) else None
    return version if isinstance(version, str) else None


def read_model_files(model_path: Path) -> tuple[dict[str, Any], bytes]:
    """The model's metadata and artifact bytes, checked against each other and against this
    listener (labels, scikit-learn version, item text); ClassifierError."""
    metadata_path = model_path.with_suffix(".json")
    for path in (model_path, metadata_path):
        if not path.is_file():
            raise ClassifierError(f"model file {path} not found: {missing_model_hint(model_path)}")
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        data = model_path.read_bytes()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifierError(f"cannot read the model in {model_path}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ClassifierError(f"{metadata_path}: not a JSON object: {retrain_hint(model_path)}")
    check_metadata(metadata, metadata_path)
    if metadata.get("artifact_sha256") != hashlib.sha256(data).hexdigest():
        raise ClassifierError(
            f"{metadata_path} does not describe {model_path} (checksum differs): "
            f"the two files come from different trainings; {retrain_hint(model_path)}"
        )
    return metadata, data


class DeferredClassifier:
    """A Classifier whose model is loaded at the first prediction (or by `preload`).

    `load` loads and checks the model (app.load_model hands in its loader); the model
    files are checked at once, so a wrong model still fails at start-up.
    """

    def __init__(self, model_path: Path, load: Callable[[], Classifier]) -> None:
        metadata, _ = read_model_files(model_path)
        self.model_path = model_path
        self.version = str(metadata.get("model_version", "unsaved"))
        self.labels: tuple[str, ...] = LABELS
        self._load = load
        self._loaded: Classifier | None = None
        # Where the model is, for a poll's workers to load it themselves (app.load_model).
        self.files: ModelFiles | None = None
        self._loading = threading.Lock()  # held for the whole load
        self._starting = threading.Lock()  # held while a preload is started, never longer
        self._preloading: threading.Thread | None = None

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def preload(self) -> None:
        """Start loading on a thread of its own, so that the load overlaps other
        work (a poll calls it when a feed brings new bytes to parse); `load` waits for it.
        A failure here is left for `load` to meet again and raise."""
        with self._starting:
            if self._loaded is not None or self._preloading is not None:
                return
            self._preloading = threading.Thread(
                target=self._load_quietly, name="model-preload", daemon=True
            )
        self._preloading.start()

    def _load_quietly(self) -> None:
        with contextlib.suppress(ClassifierError):
            self.load()

    def load(self) -> Classifier:
        """The loaded classifier (loaded now if it was not yet); ClassifierError."""
        with self._loading:
            return self._load_locked()

    def _load_locked(self) -> Classifier:
        if self._loaded is None:
            loaded = self._load()
            if loaded.version != self.version:  # the files were replaced since start-up
                raise ClassifierError(
                    f"{self.model_path} changed while listener ran (model {self.version} at "
                    f"start-up, {loaded.version} now): restart it"
                )
            self._loaded = loaded
        return self._loaded

    def predict(self, texts: Sequence[str], *, explain: bool = False) -> list[Prediction]:
        """One Prediction per text (the model is loaded on the first call with texts)."""
        if not texts:
            return []
        return self.load().predict(texts, explain=explain)

    def predict_linear(self, texts: Sequence[str]) -> list[Prediction]:
        """The linear model's predictions alone (the model is loaded as for `predict`)."""
        if not texts:
            return []
        return self.load().predict_linear(texts)
