"""The classifier's commands end to end, with the model committed in models/."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from listener.classify.training import save_classifier
from listener.cli import cli
from tests.classifier_data import tiny_model
from tests.file_limits import cap_file_size
from tests.test_poll import rss

ROOT = Path(__file__).parent.parent

HR_FEED = rss(
    "Acme careers",
    (
        "Acme recrute 300 conseillers en alternance",
        "https://acme.example/1",
        "1",
        "Entretiens d'embauche, formation et intégration des nouveaux salariés.",
    ),
    (
        "We are hiring 40 nurses: benefits, pay and training",
        "https://acme.example/2",
        "2",
        "Our recruiting team explains the interview process for candidates.",
    ),
    (
        "Acme Q3 revenue up 12% as market share grows",
        "https://acme.example/3",
        "3",
        "Quarterly results beat analyst forecasts.",
    ),
)


def invoke(tmp_path: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "l.db"), "--log-format", "json", *args],
        input=input,
        catch_exceptions=False,
    )


def test_classify_reads_json_lines_and_reports_bad_lines(tmp_path: Path) -> None:
    lines = "\n".join(
        [
            json.dumps(
                {
                    "id": 1,
                    "title": "Nous recrutons 50 développeurs en CDI",
                    "summary": "Rejoignez nos équipes : salaires, télétravail et formation.",
                }
            ),
            "{not json",
            json.dumps({"id": 2}),
            "",
            json.dumps({"id": "b", "title": "Our CEO's statement on today's press conference"}),
            # A microblog post has no title: its summary is enough.
            json.dumps(
                {
                    "id": "no-title",
                    "title": "",
                    "summary": "We are hiring 40 engineers in Lyon: apply before Friday!",
                }
            ),
            json.dumps({"id": "bad", "title": 3, "summary": "A title that is not text"}),
        ]
    )
    result = invoke(tmp_path, "classify", input=lines + "\n")
    assert result.exit_code == 1  # some lines were bad; the others were still classified
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == [1, "b", "no-title"]
    assert out[2]["labels"][0] == "human_resources"
    assert out[0]["labels"][0] == "human_resources"
    assert set(out[0]["scores"]) == {
        "marketing",
        "communication",
        "human_resources",
        "customer_service",
        "business_intelligence",
        "other",
    }
    assert out[0]["why"]["human_resources"], "the top terms explain the label"
    assert out[0]["labels"] == sorted(out[0]["labels"], key=lambda label: -out[0]["scores"][label])
    assert "line 2: not JSON" in result.stderr
    assert 'line 3: the item needs a non-empty "title" or "summary"' in result.stderr
    assert 'line 7: "title" must be a string' in result.stderr


def test_poll_classifies_new_items_then_label_review_reclassify(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/feed").respond_with_data(HR_FEED)
    invoke(tmp_path, "feeds", "add", str(httpserver.url_for("/feed")))
    assert invoke(tmp_path, "poll", "--all").exit_code == 0
    conn = sqlite3.connect(tmp_path / "l.db")
    labels = dict(
        conn.execute(
            "SELECT items.guid, item_labels.label FROM item_labels JOIN items"
            " ON items.id = item_labels.item_id WHERE item_labels.rank = 0"
        ).fetchall()
    )
    assert labels["1"] == "human_resources"
    assert labels["2"] == "human_resources"
    assert labels["3"] == "business_intelligence"
    assert conn.execute("SELECT count(*) FROM predictions").fetchone()[0] == 3
    (version,) = conn.execute("SELECT version FROM models").fetchone()
    assert version == json.loads((ROOT / "models" / "classifier.json").read_text())["model_version"]

    # A human correction wins and survives a backfill.
    item_id = conn.execute("SELECT id FROM items WHERE guid = '3'").fetchone()[0]
    result = invoke(
        tmp_path, "label", str(item_id), "communication", "business_intelligence", "--by", "ana"
    )
    assert result.exit_code == 0, result.output
    assert "was business_intelligence" in result.output
    conn.execute("DELETE FROM predictions")  # as if a new model had never seen any item
    conn.execute("DELETE FROM classifications")
    conn.commit()
    result = invoke(tmp_path, "reclassify")
    assert "3 items classified" in result.stdout
    assert "0 items classified" in invoke(tmp_path, "reclassify").stdout  # resumable: done
    effective = conn.execute(
        "SELECT label, source FROM item_labels WHERE item_id = ? ORDER BY rank", [item_id]
    ).fetchall()
    assert effective == [("communication", "human"), ("business_intelligence", "human")]
    view = conn.execute("SELECT labels FROM items_view WHERE id = ?", [item_id]).fetchone()
    assert view == ("communication,business_intelligence",)

    # Labels in any case and short forms; --clear gives the model its say back.
    result = invoke(tmp_path, "label", str(item_id), "PR", "Bi")
    assert f"item {item_id}: communication, business_intelligence (was" in result.output
    cleared = invoke(tmp_path, "label", str(item_id), "--clear")
    assert "correction removed, the model's business_intelligence" in cleared.output
    assert conn.execute("SELECT count(*) FROM labels").fetchone()[0] == 0
    again = invoke(tmp_path, "label", str(item_id), "--clear")
    assert "no correction to remove (business_intelligence" in again.output


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["sales"], "unknown label 'sales'"),
        (["MKT", "marketing"], "one or two different labels"),  # the same label twice
        ([], "give one or two LABELS (or --clear"),
        (["other", "marketing"], "'other' cannot be combined"),
        (["marketing", "marketing"], "one or two different labels"),
        (["marketing", "communication", "other"], "one or two different labels"),
    ],
)
def test_label_rejects_bad_labels(tmp_path: Path, labels: list[str], message: str) -> None:
    result = invoke(tmp_path, "label", "1", *labels)
    assert result.exit_code == 2
    assert message in result.output


def test_label_unknown_item_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(tmp_path, "label", "999", "marketing")
    assert result.exit_code == 1
    assert "no item with id 999" in result.output


def test_review_lists_uncertain_items(tmp_path: Path, httpserver: HTTPServer) -> None:
    vague = rss(
        "Misc",
        ("Update", "https://x.example/1", "1", "More soon."),
        ("Hello", "https://x.example/2", "2", ""),
    )
    httpserver.expect_request("/feed").respond_with_data(vague)
    invoke(tmp_path, "feeds", "add", str(httpserver.url_for("/feed")))
    invoke(tmp_path, "poll", "--all")
    conn = sqlite3.connect(tmp_path / "l.db")
    uncertain = {
        row[0] for row in conn.execute("SELECT item_id FROM predictions WHERE uncertain = 1")
    }
    rows = [json.loads(line) for line in invoke(tmp_path, "review", "--json").stdout.splitlines()]
    assert uncertain <= {row["id"] for row in rows}
    for row in rows:
        assert set(row["scores"]) >= {"marketing", "other"}
    priorities = [row["priority"] for row in rows]
    assert priorities == sorted(priorities, reverse=True)


def test_review_puts_feeds_without_corrections_first(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    # The tiny test model, not the shipped one: vague titles stay close calls for it whatever
    # the shipped model learns next.
    model = tmp_path / "tiny.skops"
    save_classifier(*tiny_model(), model)
    config = tmp_path / "c.toml"
    config.write_text(f'[classifier]\nmodel_path = "{model}"\n')
    for name in ("a", "b"):
        vague = rss(
            name,
            ("Update", f"https://{name}.example/1", f"{name}1", "More soon."),
            ("Hello", f"https://{name}.example/2", f"{name}2", ""),
            ("Notes", f"https://{name}.example/3", f"{name}3", "Things."),
        )
        httpserver.expect_request(f"/{name}").respond_with_data(vague)
        invoke(tmp_path, "--config", str(config), "feeds", "add", httpserver.url_for(f"/{name}"))
    invoke(tmp_path, "--config", str(config), "poll", "--all")

    def review() -> list[dict[str, Any]]:
        out = invoke(tmp_path, "--config", str(config), "review", "--json").stdout
        return [json.loads(line) for line in out.splitlines()]

    rows = review()
    assert {row["feed_id"] for row in rows} == {1, 2}
    corrected_feed = rows[0]["feed_id"]
    invoke(tmp_path, "--config", str(config), "label", str(rows[0]["id"]), "other")
    after = review()
    assert rows[0]["id"] not in {row["id"] for row in after}
    assert after[0]["feed_id"] != corrected_feed
    assert {row["feed_corrections"] for row in after if row["feed_id"] == corrected_feed} == {1}


def test_model_info_and_evaluate(tmp_path: Path) -> None:
    info = invoke(tmp_path, "model", "info")
    assert info.exit_code == 0
    assert "loads and is compatible" in info.output
    assert "held-out:" in info.output
    assert "static stage:     st-" in info.output
    assert "held-out, polls:  macro-F1 0.9" in info.output
    assert "e5 stage:         e5-" in info.output
    assert info.output.count("made for this model") == 2
    assert "held-out, all:    macro-F1 0.9" in info.output
    data = tmp_path / "eval.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {
                    "title": "Nous recrutons des techniciens",
                    "labels": ["human_resources"],
                    "lang": "fr",
                },
                {
                    "title": "Press release: new CEO appointed",
                    "labels": ["communication"],
                    "lang": "en",
                },
            ]
        )
        + "\n"
    )
    report = json.loads(invoke(tmp_path, "model", "evaluate", "--data", str(data), "--json").stdout)
    assert report["overall"]["rows"] == 2
    assert set(report["by_lang"]) == {"en", "fr"}


def test_model_evaluate_reports_bad_data_lines(tmp_path: Path) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_text('{"title": "x", "labels": ["sales"]}\nnot json\n')
    result = invoke(tmp_path, "model", "evaluate", "--data", str(data))
    assert result.exit_code == 1
    assert "eval.jsonl:1: labels must be among" in result.output
    assert "eval.jsonl:2:" in result.output


def test_missing_model_is_a_clear_startup_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[classifier]\nmodel_path = "nowhere/model.skops"\n')
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "--db", str(tmp_path / "l.db"), "poll"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "model.skops not found: train it with `listener model train --output " in (result.output)


def test_model_evaluate_real_reads_the_dev_set_or_says_it_is_absent(tmp_path: Path) -> None:
    from tests.test_evaluation import write_set

    labels = write_set(
        tmp_path,
        [
            {"feed_file": "acme.rss.xml", "item_id": "a1", "labels": ["human_resources"]},
            {"feed_file": "acme.rss.xml", "item_id": "a2", "labels": ["business_intelligence"]},
        ],
    )
    result = invoke(tmp_path, "model", "evaluate", "--real-labels", str(labels), "--json")
    assert json.loads(result.stdout)["overall"]["rows"] == 2
    text = invoke(tmp_path, "model", "evaluate", "--real-labels", str(labels)).stdout
    assert "real items:" in text
    assert "macro-F1" in text
    assert "confusion (all)" in text
    missing = invoke(tmp_path, "model", "evaluate", "--real-labels", str(tmp_path / "none"))
    assert missing.exit_code == 0
    assert "real-item evaluation skipped" in missing.stderr


def write_tiny_corpus(tmp_path: Path) -> Path:
    from tests.classifier_data import TINY

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for lang in ("en", "fr"):
        with (corpus / f"labelled_{lang}.csv").open("w", encoding="utf-8", newline="") as file:
            csv.writer(file).writerows(
                [
                    ["id", "lang", "labels", "title", "summary"],
                    *(
                        [f"{lang}-{n}", lang, labels, title, summary]
                        for n, (row_lang, labels, title, summary) in enumerate(TINY)
                        if row_lang == lang
                    ),
                ]
            )
    return corpus


def test_model_train_adapts_the_corpus_model_to_corrections(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    from listener.classify.decision import item_text
    from listener.classify.embedding import Embedder, read_head
    from listener.classify.model import load_classifier
    from listener.classify.refine import head_path, refine_text
    from listener.domain import LABELS

    httpserver.expect_request("/feed").respond_with_data(HR_FEED)
    invoke(tmp_path, "feeds", "add", str(httpserver.url_for("/feed")))
    invoke(tmp_path, "poll", "--all")
    conn = sqlite3.connect(tmp_path / "l.db")
    item_id, title, summary = conn.execute(
        "SELECT id, title, summary FROM items WHERE guid = '3'"
    ).fetchone()
    invoke(tmp_path, "label", str(item_id), "communication")
    corpus = write_tiny_corpus(tmp_path)
    plain, adapted = tmp_path / "plain.skops", tmp_path / "adapted.skops"
    invoke(tmp_path, "model", "train", "--corpus", str(corpus), "--output", str(plain))
    result = invoke(
        tmp_path, "model", "train", "--include-corrections", "--corpus", str(corpus),
        "--output", str(adapted),
    )  # fmt: skip
    assert "+ 1 corrections" in result.stdout
    before = json.loads(plain.with_suffix(".json").read_text())
    after = json.loads(adapted.with_suffix(".json").read_text())
    assert after["training_corrections"] == 1
    assert after["correction_prior_sd"] == 1.0
    assert after["thresholds"] == before["thresholds"]  # the corpus model's, not re-tuned
    text = [item_text(title, summary)]
    (old,) = load_classifier(plain).predict(text)
    (new,) = load_classifier(adapted).predict(text)
    assert new.scores["communication"] > old.scores["communication"]
    # The second stage's head learnt the correction too (weighted as refine.CORRECTION_WEIGHT).
    vector = Embedder().embed([refine_text(title, summary)])
    column = LABELS.index("communication")
    plain_head, adapted_head = read_head(head_path(plain)), read_head(head_path(adapted))
    assert plain_head is not None
    assert adapted_head is not None
    assert adapted_head.scores(vector)[0, column] > plain_head.scores(vector)[0, column]


def test_model_train_never_replaces_the_shipped_model_and_says_how_to_use_its_own(
    tmp_path: Path,
) -> None:
    from listener.config import SHIPPED_MODEL

    shipped = SHIPPED_MODEL.read_bytes()
    corpus = write_tiny_corpus(tmp_path)
    config = tmp_path / "listener.toml"
    config.write_text("")  # the defaults: the shipped model
    base = ("--config", str(config), "model", "train", "--corpus", str(corpus))
    refused = invoke(tmp_path, *base)
    assert refused.exit_code == 2
    assert "the model shipped with listener is not replaced: give --output FILE" in (refused.output)
    named = invoke(tmp_path, *base, "--output", str(SHIPPED_MODEL))  # named, still refused
    assert named.exit_code == 2
    assert SHIPPED_MODEL.read_bytes() == shipped

    own = tmp_path / "models" / "own.skops"
    own.parent.mkdir()
    written = invoke(tmp_path, *base, "--output", str(own))
    assert written.exit_code == 0, written.output
    assert own.is_file()
    assert f'to use it: set model_path = "{own}" under [classifier] in {config}' in (written.stdout)
    assert "restart the daemon (it reads its settings when it starts)" in written.stdout
    assert "`listener reclassify --since 30d`" in written.stdout
    assert SHIPPED_MODEL.read_bytes() == shipped

    # Configured, it is the default output: replaced in place, nothing to set.
    config.write_text('[classifier]\nmodel_path = "models/own.skops"\n')
    replaced = invoke(tmp_path, *base)
    assert replaced.exit_code == 0, replaced.output
    assert f"against the previous model ({own}), same held-out rows:" in replaced.stdout
    assert "to use it: a running daemon loads it before its next poll" in replaced.stdout
    assert "set model_path" not in replaced.stdout


def test_a_model_train_that_fails_half_way_keeps_every_file_of_the_old_model(
    tmp_path: Path,
) -> None:
    corpus = write_tiny_corpus(tmp_path)
    model = tmp_path / "models" / "ours.skops"
    train = ["model", "train", "--corpus", str(corpus), "--output", str(model)]
    assert invoke(tmp_path, *train).exit_code == 0
    before = {path.name: path.read_bytes() for path in model.parent.iterdir()}
    assert len(before) == 7  # the .skops, its .npz and .json, two stages and their .json
    # Another corpus, so that a new model would differ from the saved one in every file.
    with (corpus / "labelled_en.csv").open("a", encoding="utf-8") as rows:
        rows.write("en-extra,en,human_resources,We are hiring nurses,Apply by Friday\n")
    # A real fault, in a process of its own: its .skops (about 100 KB) fits under the cap,
    # the static stage (about 10 MB) does not.
    limit = 1 << 20
    assert len(before["ours.skops"]) < limit < len(before["ours.static.npz"])
    done = subprocess.run(
        [sys.executable, "-m", "listener", "--db", str(tmp_path / "l.db"), *train],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: cap_file_size(limit),
    )
    assert done.returncode == 1, done.stderr
    assert "Error: cannot write " in done.stderr
    assert done.stderr.rstrip().endswith("ours.static.npz: File too large")
    assert "Traceback" not in done.stderr
    # Every file of the old model is as it was, and nothing else is left in its folder.
    assert {path.name: path.read_bytes() for path in model.parent.iterdir()} == before

    # Without the fault, the same command replaces every file.
    assert invoke(tmp_path, *train).exit_code == 0
    after = {path.name: path.read_bytes() for path in model.parent.iterdir()}
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in before)


def test_model_train_compares_with_the_model_it_replaces(tmp_path: Path) -> None:
    corpus = write_tiny_corpus(tmp_path)
    model = tmp_path / "m.skops"
    train = ("model", "train", "--corpus", str(corpus), "--output", str(model))
    first = invoke(tmp_path, *train)
    assert first.exit_code == 0, first.output
    # A new file replaces nothing: the comparison is with the configured (shipped) model.
    assert "against the previous model (" in first.stdout
    second = invoke(tmp_path, *train)
    assert f"against the previous model ({model}), same held-out rows:" in second.stdout
    table = second.stdout.split("same held-out rows:\n")[1]
    assert table.splitlines()[0].split() == ["previous", "new", "change"]
    assert table.splitlines()[1].split()[0] == "macro-F1"
    assert table.splitlines()[1].split()[-1] == "+0.000"  # retraining is deterministic
    assert any(line.startswith("F1 human_resources") for line in table.splitlines())


def test_model_train_writes_the_second_stage_beside_the_model_and_its_cache_beside_the_corpus(
    tmp_path: Path,
) -> None:
    from listener.classify.embedding import read_head
    from listener.classify.linear import read_static_stage
    from listener.classify.training import CORPUS_DIR, EMBEDDINGS_NAME

    shipped_cache = (CORPUS_DIR / EMBEDDINGS_NAME).read_bytes()
    corpus = write_tiny_corpus(tmp_path)
    model = tmp_path / "m.skops"
    result = invoke(tmp_path, "model", "train", "--corpus", str(corpus), "--output", str(model))
    assert result.exit_code == 0, result.output
    head = read_head(tmp_path / "m.refine.npz")
    assert head is not None
    assert head.pairs_with == json.loads(model.with_suffix(".json").read_text())["model_version"]
    assert f"with the e5 stage {head.version}" in result.stdout
    stage = read_static_stage(model, head.pairs_with)  # written, and made for this model
    assert stage is not None
    assert f"with the static stage {stage.head.version}" in result.stdout
    assert (corpus / EMBEDDINGS_NAME).is_file()
    assert (CORPUS_DIR / EMBEDDINGS_NAME).read_bytes() == shipped_cache  # another corpus's

    evaluated = invoke(tmp_path, "model", "evaluate", "--model", str(model))
    assert evaluated.exit_code == 0, evaluated.output
    assert f"e5 stage {head.version}" in evaluated.stdout
    assert "the poll path alone" in evaluated.stdout
