"""app.ModelFollower: the daemon's model follows its file. `listener model train` replaces the
configured model, and the next poll (or refine) job loads it, its second stage with it; a
model that does not load is logged once and the running one kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import structlog
from structlog.testing import capture_logs

from listener.app import ModelFollower, daemon_jobs, make_services
from listener.config import parse_settings
from listener.store import open_store
from tests.test_cli_classify import invoke, write_tiny_corpus

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def version_of(model: Path) -> str:
    return str(json.loads(model.with_suffix(".json").read_text())["model_version"])


def test_the_daemons_model_follows_its_file(tmp_path: Path) -> None:
    structlog.configure(cache_logger_on_first_use=False)  # so capture_logs sees the events
    corpus = write_tiny_corpus(tmp_path)
    model = tmp_path / "models" / "ours.skops"
    train = ("model", "train", "--corpus", str(corpus), "--output", str(model))
    assert invoke(tmp_path, *train).exit_code == 0
    first = version_of(model)
    settings = parse_settings({"classifier": {"model_path": str(model)}}, {})
    store = open_store(tmp_path / "l.db")
    services = make_services(settings, store, refine=True)
    assert services.classifier is not None
    assert services.second_stage is not None
    assert services.classifier.version == first
    follow = ModelFollower(services)
    with capture_logs() as unchanged:
        follow(NOW)
    assert services.classifier.version == first
    assert unchanged == []

    # A retrain on another corpus replaces the seven files; the next poll job loads them.
    with (corpus / "labelled_en.csv").open("a", encoding="utf-8") as rows:
        rows.write("en-extra,en,human_resources,We are hiring nurses,Apply by Friday\n")
    assert invoke(tmp_path, *train).exit_code == 0
    second = version_of(model)
    assert second != first
    (poll,) = [job for job in daemon_jobs(services) if job.name == "poll"]
    with capture_logs() as reloaded:
        poll.func()  # the poll job as the daemon runs it (no feeds: nothing to fetch)
    assert services.classifier.version == second
    assert services.second_stage.head.pairs_with == second  # type: ignore[union-attr]
    (event,) = [e for e in reloaded if e["event"] == "model_reloaded"]
    assert (event["previous"], event["model"]) == (first, second)
    used = store.db.execute("SELECT version FROM models ORDER BY last_used_at DESC").fetchone()
    assert used[0] == second  # recorded: its predictions are the ones that count from now

    # A model file whose second stage was made for another model (a copy gone wrong): it does
    # not load, the running model stays, and the failure is logged once, not at every job.
    metadata = json.loads(model.with_suffix(".json").read_text())
    metadata["model_version"] = "bf-000000000000"
    model.with_suffix(".json").write_text(json.dumps(metadata))
    with capture_logs() as refused:
        follow(NOW)
        follow(NOW)
    assert services.classifier.version == second
    (failed,) = [e for e in refused if e["event"] == "model_reload_failed"]
    assert (failed["model"], failed["running"]) == ("bf-000000000000", second)
    assert failed["log_level"] == "warning"
    store.close()
