from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

from listener.classify.model import LABELS, item_text, make_classifier
from listener.classify.training import (
    CORRECTION_PRIOR_SD,
    FEED_LIKE_WEIGHT,
    CorpusError,
    LabelledRow,
    best_threshold,
    build_pipeline,
    evaluate,
    fit_pipeline,
    fit_residual,
    format_evaluation,
    label_matrix,
    macro_f1_interval,
    main,
    normalise_skops,
    parse_rows,
    read_corpus,
    report_as_dict,
    save_classifier,
    split_heldout,
    staged_model,
    train_classifier,
)
from listener.errors import ClassifierError
from tests.classifier_data import TINY, tiny_model, tiny_rows, train_tiny
from tests.file_limits import cap_file_size

HEADER = ["id", "lang", "labels", "title", "summary"]


def write_csv(path: Path, records: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([HEADER, *records])
    return path


# --- reading and validating the corpus ---------------------------------------------------


def test_parse_rows_reads_labels_primary_first() -> None:
    rows, problems = parse_rows(
        [HEADER, ["en-1", "en", "communication;business_intelligence", "Results", "Text"]], "x.csv"
    )
    assert problems == []
    assert rows[0].labels == ("communication", "business_intelligence")
    assert rows[0].primary == "communication"
    assert rows[0].source == "x.csv:2"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (["en-1", "en", "marketting", "T", "S"], "x.csv:2: unknown label 'marketting'"),
        (["en-1", "en", "other;marketing", "T", "S"], "'other' cannot be combined"),
        (["en-1", "en", "marketing;marketing", "T", "S"], "1 or 2 distinct labels"),
        (
            ["en-1", "en", "marketing;communication;other", "T", "S"],
            "1 or 2 distinct labels",
        ),
        (["en-1", "English", "marketing", "T", "S"], "lang 'English' is not an ISO 639-1 code"),
        (["", "en", "marketing", "T", "S"], "empty id"),
        (["en-1", "en", "marketing", " ", "S"], "empty title"),
        (["en-1", "en", "marketing"], "3 fields, expected 5"),
    ],
)
def test_parse_rows_reports_bad_rows_with_file_and_line(record: list[str], problem: str) -> None:
    rows, problems = parse_rows([HEADER, record], "x.csv")
    assert rows == []
    assert len(problems) == 1
    assert problem in problems[0]
    assert problems[0].startswith("x.csv:2: ")


def test_parse_rows_checks_the_header() -> None:
    _, problems = parse_rows([["id", "labels", "title"]], "x.csv")
    assert problems[0].startswith("x.csv:1: header must be id,lang,labels,title,summary")


def test_read_corpus_reads_every_file_sorted_by_id(tmp_path: Path) -> None:
    write_csv(tmp_path / "labelled_fr.csv", [["fr-1", "fr", "other", "Pluie", ""]])
    write_csv(tmp_path / "labelled_en.csv", [["en-1", "en", "marketing", "Ads", "Text"]])
    write_csv(tmp_path / "notes.csv", [["zz", "en", "nonsense", "ignored", ""]])
    assert [row.id for row in read_corpus(tmp_path)] == ["en-1", "fr-1"]


def test_read_corpus_weighs_feed_like_rows_more(tmp_path: Path) -> None:
    write_csv(tmp_path / "labelled_en.csv", [["en-1", "en", "marketing", "Ads", "Text"]])
    write_csv(tmp_path / "labelled_en_feeds.csv", [["enf-1", "en", "other", "Rain", ""]])
    weights = {row.id: row.weight for row in read_corpus(tmp_path)}
    assert weights == {"en-1": 1.0, "enf-1": FEED_LIKE_WEIGHT}
    assert FEED_LIKE_WEIGHT > 1.0


def test_read_corpus_lists_every_problem(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "labelled_en.csv", [["a", "en", "bad", "T", ""], ["b", "en", "x", "T", ""]]
    )
    write_csv(tmp_path / "labelled_fr.csv", [["a", "fr", "other", "T", ""]])
    with pytest.raises(CorpusError) as caught:
        read_corpus(tmp_path)
    message = str(caught.value)
    assert "labelled_en.csv:2: unknown label 'bad'" in message
    assert "labelled_en.csv:3: unknown label 'x'" in message
    assert "labelled_fr.csv:2" not in message  # its row is fine; the id clash is elsewhere


def test_read_corpus_refuses_duplicate_ids(tmp_path: Path) -> None:
    write_csv(tmp_path / "labelled_en.csv", [["a", "en", "other", "T", ""]])
    write_csv(tmp_path / "labelled_fr.csv", [["a", "fr", "other", "T", ""]])
    with pytest.raises(CorpusError, match=r"labelled_fr\.csv:2: id 'a' already used"):
        read_corpus(tmp_path)


def test_read_corpus_needs_files(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no labelled_\*\.csv files"):
        read_corpus(tmp_path)


# --- the held-out split --------------------------------------------------------------------


def many_rows() -> list[LabelledRow]:
    return [
        LabelledRow(f"{lang}-{label}-{n}", lang, (label,), f"title {n}", "")
        for lang in ("en", "fr")
        for label in LABELS
        for n in range(50)
    ]


def test_split_heldout_is_deterministic_disjoint_and_stratified() -> None:
    rows = many_rows()
    training, heldout = split_heldout(rows)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert split_heldout(shuffled) == (training, heldout)
    assert {r.id for r in training}.isdisjoint({r.id for r in heldout})
    assert len(training) + len(heldout) == len(rows)
    for lang in ("en", "fr"):
        for label in LABELS:
            assert sum(r.lang == lang and r.primary == label for r in heldout) == 10


# --- training ------------------------------------------------------------------------------


def test_best_threshold_maximises_f1() -> None:
    scores = np.array([0.9, 0.8, 0.35, 0.3, 0.2, 0.1])
    truth = np.array([1, 1, 1, 0, 0, 0])
    # every threshold in (0.3, 0.35] is perfect; ties go to the one nearest 0.5
    assert best_threshold(scores, truth) == pytest.approx(0.35)


def test_train_classifier_records_what_it_learnt_from() -> None:
    _, metadata = tiny_model()
    assert metadata["labels"] == list(LABELS)
    assert set(metadata["thresholds"]) == set(LABELS)
    assert metadata["training_rows"] == len(TINY)
    assert metadata["training_rows_per_label_lang"]["marketing"] == {"en": 4, "fr": 4}
    assert len(metadata["training_sha256"]) == 64


def test_train_classifier_takes_corrections_which_win() -> None:
    rows = tiny_rows()
    corrected = LabelledRow(rows[0].id, "en", ("other",), rows[0].title, rows[0].summary)
    extra = LabelledRow("item:abc", "en", ("human_resources",), "Recruiters wanted", "")
    _, metadata = train_classifier(rows, corrections=[corrected, extra], threshold_folds=2)
    # the corpus row a correction replaces is left out of the corpus fit
    assert metadata["training_rows"] == len(rows) - 1
    assert metadata["training_corrections"] == 2
    assert metadata["correction_prior_sd"] == CORRECTION_PRIOR_SD
    assert metadata["training_rows_per_label_lang"]["marketing"]["en"] == 3


NEWSLETTER = LabelledRow(
    "item:1", "en", ("customer_service",), "Quarterly newsletter for our partners", ""
)


def scores_of(pipeline: Any, titles: list[str]) -> Any:
    return pipeline.predict_proba([item_text(title, "") for title in titles])


def test_corrections_adapt_the_corpus_model_and_keep_its_thresholds() -> None:
    rows = tiny_rows()
    _, plain = train_classifier(rows, threshold_folds=2)
    pipeline, metadata = train_classifier(rows, corrections=[NEWSLETTER], threshold_folds=2)
    assert metadata["thresholds"] == plain["thresholds"]
    assert metadata["training_sha256"] == plain["training_sha256"]
    titles = [
        "Quarterly newsletter for our partners",
        "Partners newsletter, quarterly edition",
        "We are hiring a senior recruiter",
    ]
    before = scores_of(train_classifier(rows, threshold_folds=2)[0], titles)
    after = scores_of(pipeline, titles)
    rise = np.log(after / (1 - after)) - np.log(before / (1 - before))
    service = LABELS.index("customer_service")
    # the corrected item and its near-duplicate move towards the person's label (about 2
    # logits for one correction against a confident model), an unrelated item much less
    assert rise[0, service] > 1.0
    assert rise[1, service] > 0.3
    assert abs(rise[2, service]) < rise[1, service] / 2


def test_adapted_model_scores_the_same_from_its_arrays() -> None:
    pipeline, metadata = train_classifier(tiny_rows(), corrections=[NEWSLETTER], threshold_folds=2)
    texts = [item_text(row.title, row.summary) for row in tiny_rows()[:8]]
    runtime = make_classifier(pipeline, metadata).scorer.probabilities(texts)[0]
    assert np.allclose(runtime, pipeline.predict_proba(texts), atol=1e-5)


def test_fit_residual_stays_at_zero_without_evidence_or_freedom() -> None:
    features = sparse.csr_matrix(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    offset = np.zeros(2)
    truth = np.array([1.0, 0.0])
    fitted = fit_residual(features, offset, truth, prior_sd=1.0)
    assert fitted[0] == 0.0  # a column no correction uses
    assert fitted[1] > 0 > fitted[2]  # the positive row's feature up, the negative's down
    assert not fit_residual(features, offset, truth, prior_sd=0.0).any()
    # a tighter prior keeps the weights smaller; a row already scored right moves less
    assert abs(fit_residual(features, offset, truth, prior_sd=0.1)[1]) < fitted[1]
    confident = fit_residual(features, np.array([4.0, -4.0]), truth, prior_sd=1.0)
    assert confident[1] < fitted[1]


def test_fit_pipeline_matches_scikit_learns_own_fit_without_weights() -> None:
    rows = tiny_rows()
    texts = [item_text(row.title, row.summary) for row in rows]
    targets = label_matrix(rows)
    ours = fit_pipeline(build_pipeline(), texts, targets)
    theirs = build_pipeline().fit(texts, targets)
    assert np.allclose(ours.predict_proba(texts), theirs.predict_proba(texts))


def test_train_classifier_needs_every_label() -> None:
    rows = [row for row in tiny_rows() if row.primary != "other"]
    with pytest.raises(ClassifierError, match="no training rows for label"):
        train_classifier(rows)


def test_training_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "classifier.skops", tmp_path / "b" / "classifier.skops"
    save_classifier(*tiny_model(), first)
    save_classifier(*train_tiny(), second)
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".json").read_bytes() == second.with_suffix(".json").read_bytes()


def test_a_model_file_that_cannot_be_written_whole_keeps_the_old_one(tmp_path: Path) -> None:
    # A real fault: the kernel refuses to let the writing process grow a file past 1 MB
    # (RLIMIT_FSIZE, as a full disk would stop it), in a process of its own.
    model = tmp_path / "ours.skops"
    save_classifier(*tiny_model(), model)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    limit = 1 << 20
    assert len(before["ours.skops"]) < limit
    writer = (
        "import sys\n"
        "from pathlib import Path\n"
        "from listener.classify.training import write_model_file\n"
        "from listener.errors import ClassifierError\n"
        "try:\n"
        f"    write_model_file(Path(sys.argv[1]), b'x' * {4 * limit})\n"
        "except ClassifierError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", writer, str(model)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: cap_file_size(limit),
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"cannot write {model}: File too large"
    # The old model is whole, and no temporary file is left beside it.
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


_STAGING = (
    "import sys\n"
    "from pathlib import Path\n"
    "from listener.classify.training import staged_model\n"
    "with staged_model(Path(sys.argv[1])) as staged:\n"
    "    print(staged.parent, flush=True)\n"
    "    sys.stdin.read()  # until the test closes stdin or kills this process\n"
)


def _staging(model: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process inside staged_model(model), and its staging folder."""
    child = subprocess.Popen(
        [sys.executable, "-c", _STAGING, str(model)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


def test_a_retrain_removes_the_staging_folders_of_killed_ones_only(tmp_path: Path) -> None:
    model = tmp_path / "ours.skops"
    running, in_use = _staging(model)
    try:
        killed, abandoned = _staging(model)  # leaves the running one's folder alone
        killed.kill()  # SIGKILL, as the OOM killer: no clean-up runs
        killed.wait(timeout=30)
        assert abandoned.is_dir()
        assert in_use.is_dir()
        with staged_model(model) as staged:
            assert not abandoned.exists()  # its lock was free: removed
            assert in_use.is_dir()  # its lock is held: left alone
            assert staged.parent.is_dir()
    finally:
        assert running.stdin is not None
        running.stdin.close()
        running.wait(timeout=30)
    # Each retrain that ended removed its own folder; nothing was staged, so none installed.
    assert list(tmp_path.iterdir()) == []


def test_normalise_skops_fixes_names_and_dates(tmp_path: Path) -> None:
    path = tmp_path / "classifier.skops"
    save_classifier(*tiny_model(), path)
    data = path.read_bytes()
    assert normalise_skops(data) == data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}


# --- evaluation ----------------------------------------------------------------------------


def test_evaluation_report_shape() -> None:
    classifier = make_classifier(*tiny_model())
    rows = tiny_rows()
    report = evaluate(classifier, rows)
    assert report.labels == LABELS
    assert set(report.by_lang) == {"en", "fr"}
    for part, n in [(report.overall, len(rows)), (report.by_lang["en"], len(rows) // 2)]:
        assert part.rows == n
        assert set(part.per_label) == set(LABELS)
        assert len(part.confusion) == len(LABELS)
        assert all(len(line) == len(LABELS) for line in part.confusion)
        assert sum(map(sum, part.confusion)) == n
        assert 0.0 <= part.macro_f1 <= 1.0
    assert report.overall.per_label["marketing"].support == 8
    assert json.loads(json.dumps(report_as_dict(report)))["overall"]["rows"] == len(rows)
    text = format_evaluation(report)
    assert "macro-F1" in text
    assert "95% interval" in text
    assert all(label in text for label in LABELS)
    low, high = report.overall.macro_f1_interval
    assert low <= report.overall.macro_f1 <= high


def test_macro_f1_interval_is_a_reproducible_bootstrap_that_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(7)
    truth = rng.random((60, len(LABELS))) < 0.3
    guess = truth ^ (rng.random(truth.shape) < 0.2)  # a fifth of the decisions wrong
    low, high = macro_f1_interval(truth, guess)
    assert 0.0 < low < high < 1.0
    assert macro_f1_interval(truth, guess) == (low, high)  # seeded: the same rows, the same
    big_low, big_high = macro_f1_interval(np.tile(truth, (10, 1)), np.tile(guess, (10, 1)))
    assert big_high - big_low < (high - low) / 2  # ten times the rows: about a third as wide
    assert low < big_low < big_high < high


def test_macro_f1_interval_edges() -> None:
    every = np.ones((5, len(LABELS)), dtype=bool)
    assert macro_f1_interval(every, every) == (1.0, 1.0)
    assert macro_f1_interval(every, ~every) == (0.0, 0.0)
    empty = np.zeros((0, len(LABELS)), dtype=bool)
    assert macro_f1_interval(empty, empty) == (0.0, 0.0)


# --- `python -m listener.classify.training` -------------------------------------------------------


def test_main_trains_from_the_corpus_and_writes_the_artifact(tmp_path: Path, capsys: Any) -> None:
    records = [[r.id, r.lang, ";".join(r.labels), r.title, r.summary] for r in tiny_rows()]
    write_csv(tmp_path / "labelled_all.csv", records)
    output = tmp_path / "out" / "classifier.skops"
    assert main(["--corpus", str(tmp_path), "--output", str(output)]) == 0
    metadata = json.loads(output.with_suffix(".json").read_text())
    assert metadata["heldout"]["overall"]["rows"] == metadata["heldout_rows"]
    assert "macro-F1" in capsys.readouterr().out


def test_main_reports_bad_data(tmp_path: Path, capsys: Any) -> None:
    write_csv(tmp_path / "labelled_en.csv", [["a", "en", "bad", "T", ""]])
    assert main(["--corpus", str(tmp_path), "--output", str(tmp_path / "m.skops")]) == 1
    assert "labelled_en.csv:2: unknown label 'bad'" in capsys.readouterr().err
