"""Commands for the classifier: classify, model train|evaluate|info, label, review, reclassify.

Thin like the rest of the CLI: the model lives in `classify`, training in `training`, the
backfill loop in `jobs.reclassify_items`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from listener.cli.support import (
    FUNCTION,
    LIMIT_OPTION,
    MODEL_OPTION,
    SINCE_OPTION,
    Context,
    handle_errors,
    now_utc,
    plural,
    since_time,
)
from listener.config import SHIPPED_MODEL, model_path
from listener.errors import ClassifierError

_CLASSIFY_BATCH = 256
# The newest candidates ranked for review: bounded so review stays instant on a big store.
_REVIEW_POOL = 5_000


def _load(obj: Context, path: Path | None = None) -> Any:
    from listener.classify.model import load_classifier

    return load_classifier(
        path or model_path(obj.settings), uncertain_below=obj.settings.classifier.uncertain_below
    )


@click.command("classify")
@MODEL_OPTION
@click.pass_obj
@handle_errors
def classify_command(obj: Context, model_file: Path | None) -> None:
    """Classify JSON lines from stdin, one result per line on stdout.

    Input: {"id": ..., "title": "...", "summary": "..."} (a title, a summary or both).
    Output: {"id", "labels" (best first), "scores", "uncertain", "why" (top terms per
    label)}. A bad line gets an error on stderr with its number; the others are still
    classified (exit 1).
    """
    classifier = _load(obj, model_file)
    bad = 0
    for batch in _batches(sys.stdin):
        good: list[tuple[Any, str]] = []
        for number, line in batch:
            try:
                good.append(_parse_line(line))
            except ValueError as exc:
                click.echo(f"line {number}: {exc}", err=True)
                bad += 1
        predictions = classifier.predict([text for _, text in good], explain=True)
        for (item_id, _), prediction in zip(good, predictions, strict=True):
            result = {
                "id": item_id,
                "labels": list(prediction.labels),
                "scores": dict(prediction.scores),
                "uncertain": prediction.uncertain,
                "why": {label: list(terms) for label, terms in prediction.why.items()},
            }
            click.echo(json.dumps(result, ensure_ascii=False))
    if bad:
        sys.exit(1)


def _batches(stream: TextIO) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    for number, line in enumerate(stream, start=1):
        if line.strip():
            batch.append((number, line))
        if len(batch) >= _CLASSIFY_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _parse_line(line: str) -> tuple[Any, str]:
    from listener.classify.model import item_text

    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    # Real feeds publish items without a title (microblogs, some podcasts): either field will do.
    title = record.get("title") or ""
    summary = record.get("summary") or ""
    for name, value in (("title", title), ("summary", summary)):
        if not isinstance(value, str):
            raise ValueError(f'"{name}" must be a string')
    if not title.strip() and not summary.strip():
        raise ValueError('the item needs a non-empty "title" or "summary"')
    return record.get("id"), item_text(title, summary)


# -- model -----------------------------------------------------------------------------------


@click.group("model")
def model_group() -> None:
    """Train, evaluate and inspect the business-function classifier."""


@model_group.command("train")
@click.option(
    "--include-corrections",
    is_flag=True,
    help="Also learn from the labels people set with `listener label`.",
)
@click.option(
    "--corpus",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Folder of labelled_*.csv files (default: models/training).",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Model file to write (default: the configured `classifier.model_path`, replaced; "
    "required when none is configured, so the model shipped with listener stays as it is).",
)
@click.pass_obj
@handle_errors
def model_train(
    obj: Context, include_corrections: bool, corpus: Path | None, output: Path | None
) -> None:
    """Retrain from the corpus (deterministic), evaluate on the held-out split, save.

    The previous model at the same path is evaluated on the same rows first, so you see
    whether the new one is better. This deployment's model is a file of its own: the one
    shipped with listener is never replaced (`make model` rebuilds it in a checkout).
    """
    target = output or model_path(obj.settings)
    if target.resolve() == SHIPPED_MODEL.resolve():
        raise click.UsageError(
            "the model shipped with listener is not replaced: give --output FILE for this "
            "deployment's model (for example models/ours.skops beside listener.toml), "
            "then set [classifier] model_path to it"
        )
    from listener.classify import training
    from listener.classify.refine import head_path

    _, heldout = training.split_heldout(training.read_corpus(corpus or training.CORPUS_DIR))
    corrections: list[Any] = []
    if include_corrections:
        with obj.store() as store:
            corrections = [
                training.LabelledRow(
                    id=f"item-{row['id']}",
                    lang=row["lang"] or "und",
                    labels=tuple(row["labels"].split(";")),
                    title=row["title"],
                    summary=row["summary"],
                    source=f"labels table, item {row['id']}",
                )
                for row in store.corrections()
            ]
    # The model this one replaces: the file it overwrites, else the configured model.
    previous_path = target if target.exists() else model_path(obj.settings)
    previous = None
    try:
        previous = training.evaluate(_load(obj, previous_path), heldout)
    except ClassifierError as exc:  # no model yet, or an unusable one: say so, train anyway
        click.echo(f"no comparison with the previous model: {exc}", err=True)
    result = training.retrain(
        corpus or training.CORPUS_DIR, target, corrections=corrections
    )  # the same steps as `make model`, written to `target`
    report = result.poll_report  # what polls store: the linear model and its static stage
    click.echo(
        f"model {result.version}: {result.training_rows} corpus rows + {len(corrections)} "
        f"corrections, evaluated on {result.heldout_rows} held-out rows"
    )
    click.echo(f"wrote {target} and {target.with_suffix('.json')}\n")
    click.echo(training.format_evaluation(report))
    first, both = result.report, result.two_stage_report
    click.echo(
        f"\nthe linear model alone: macro-F1 {first.overall.macro_f1:.3f}; with the static "
        f"stage {result.static.head.version} (above, as polls score): "
        f"{report.overall.macro_f1:.3f}; with the e5 stage {result.head.version} "
        f"({head_path(target)}) too: macro-F1 {both.overall.macro_f1:.3f}, "
        f"uncertain {both.overall.uncertain_rate:.3f}"
    )
    _say_how_to_use(obj, target)
    if previous is not None:
        delta = report.overall.macro_f1 - previous.overall.macro_f1
        click.echo(f"\nagainst the previous model ({previous_path}), same held-out rows:")
        click.echo(training.format_comparison(previous, report))
        click.echo(
            f"\nheld-out macro-F1: {report.overall.macro_f1:.3f} "
            f"(previous model {previous.overall.macro_f1:.3f}, {delta:+.3f})"
        )


def _say_how_to_use(obj: Context, target: Path) -> None:
    """The steps that put a newly written model to work, on stdout."""
    if target.resolve() != model_path(obj.settings).resolve():
        where = obj.config_file.path or "listener.toml"
        steps = [
            f'set model_path = "{target.resolve()}" under [classifier] in {where}',
            "restart the daemon (it reads its settings when it starts)",
        ]
    else:  # the configured model: a running daemon follows its file (app.ModelFollower)
        steps = ["a running daemon loads it before its next poll, no restart needed"]
    steps.append("run `listener reclassify --since 30d` to re-score the items already stored")
    click.echo("\nto use it: " + "; ".join(steps) + ".")


@model_group.command("evaluate")
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='JSON lines {"title", "summary", "labels": [...], "lang"} '
    "(default: the corpus's held-out split).",
)
@click.option(
    "--real",
    is_flag=True,
    help="Evaluate on the real-item development set (hand-labelled items of real feeds, "
    "parsed as the poller parses them) instead; skipped with a message when it is absent.",
)
@click.option(
    "--real-labels",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The development set's labels file (implies --real; default "
    "../shared/eval-dev/dev_labels.jsonl, its feeds in ../realfeeds/feeds/ beside it).",
)
@MODEL_OPTION
@click.option(
    "--first-stage-only",
    is_flag=True,
    help="Leave out the e5 stage (the refine job's re-scoring of uncertain items); the "
    "poll path's static stage stays.",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.pass_obj
@handle_errors
def model_evaluate(
    obj: Context,
    data: Path | None,
    real: bool,
    real_labels: Path | None,
    model_file: Path | None,
    first_stage_only: bool,
    as_json: bool,
) -> None:
    """Per-label precision / recall / F1, macro-F1, confusion matrix, per language."""
    from listener.classify import training

    if real or real_labels:
        from listener.classify.evaluation import DEV_LABELS, read_dev_set, rows_of

        labels_path = real_labels or DEV_LABELS
        if not labels_path.is_file():
            click.echo(f"real-item evaluation skipped: {labels_path} not found", err=True)
            return
        rows = rows_of(read_dev_set(labels_path))
        if not as_json:
            click.echo(f"real items: {labels_path} ({plural(len(rows), 'item')})")
    elif data is None:
        _, rows = training.split_heldout(training.read_corpus(training.CORPUS_DIR))
    else:
        rows = _read_labelled_jsonl(data)
    classifier = _load(obj, model_file)
    stage = None
    if not first_stage_only:
        from listener.app import load_second_stage

        try:
            stage = load_second_stage(
                obj.settings, classifier, model_file=model_file, threads=os.cpu_count() or 1
            )
        except ClassifierError as exc:
            click.echo(f"first stage only: {exc}", err=True)
    report = training.evaluate(classifier, rows, second_stage=stage)
    first = training.evaluate(classifier, rows) if stage is not None else None
    if as_json:
        result = training.report_as_dict(report)
        if first is not None:
            result["second_stage"] = stage.head.version if stage else None
            result["first_stage_only"] = training.report_as_dict(first)
        click.echo(json.dumps(result, indent=2))
        return
    if stage is not None and first is not None:
        click.echo(
            f"all stages (model {classifier.version}, e5 stage {stage.head.version}), as the "
            "refine job leaves items:"
        )
    click.echo(training.format_evaluation(report))
    if first is not None:
        click.echo(
            "\nthe poll path alone (the linear model and its static stage, as polls store "
            "it) and with the e5 stage:"
        )
        click.echo(training.format_comparison(first, report, names=("poll", "all")))


def _read_labelled_jsonl(path: Path) -> list[Any]:
    from listener.classify.training import LabelledRow
    from listener.domain import LABELS

    rows, problems = [], []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                labels = tuple(record["labels"])
                if not labels or not set(labels) <= set(LABELS):
                    raise ValueError(f"labels must be among {', '.join(LABELS)}")
                rows.append(
                    LabelledRow(
                        id=str(record.get("id", number)),
                        lang=str(record.get("lang") or "und"),
                        labels=labels,
                        title=str(record["title"]),
                        summary=str(record.get("summary") or ""),
                        source=f"{path}:{number}",
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                problems.append(f"{path}:{number}: {exc}")
    if problems:
        raise click.ClickException("bad evaluation data:\n  " + "\n  ".join(problems[:20]))
    if not rows:
        raise click.ClickException(f"{path}: no rows")
    return rows


@model_group.command("info")
@MODEL_OPTION
@click.pass_obj
@handle_errors
def model_info(obj: Context, model_file: Path | None) -> None:
    """The model's version, labels, training data, thresholds and held-out scores, and its
    static and e5 stages."""
    from listener.classify.decision import missing_model_hint
    from listener.classify.refine import head_path
    from listener.classify.static import static_path

    path = model_file or model_path(obj.settings)
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise click.ClickException(f"{meta_path} not found: {missing_model_hint(path)}")
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    try:
        _load(obj, path)
        status = "loads and is compatible"
    except ClassifierError as exc:
        status = f"NOT usable: {exc}"
    heldout = metadata.get("heldout") or {}
    overall = heldout.get("overall", {})
    click.echo(f"model:            {path}")
    click.echo(f"version:          {metadata.get('model_version')}")
    click.echo(f"status:           {status}")
    for key in ("sklearn_version", "training_sha256", "training_rows", "pipeline"):
        if key in metadata:
            click.echo(f"{key + ':':<18}{_short(metadata[key])}")
    click.echo(f"labels:           {', '.join(metadata.get('labels', []))}")
    thresholds = metadata.get("thresholds", {})
    click.echo("thresholds:       " + ", ".join(f"{k} {v:.2f}" for k, v in thresholds.items()))
    if overall:
        langs = ", ".join(
            f"{lang} {part['macro_f1']:.3f}"
            for lang, part in sorted(heldout.get("by_lang", {}).items())
        )
        click.echo(
            f"held-out:         macro-F1 {overall['macro_f1']:.3f} ({langs}) "
            f"on {overall['rows']} rows"
        )
    version = metadata.get("model_version")
    _echo_stage(
        "static stage", static_path(path), version, version_key="static_version",
        detail="words", report_key="heldout_poll_path", report_name="held-out, polls",
    )  # fmt: skip
    _echo_stage(
        "e5 stage", head_path(path), version, version_key="head_version",
        detail="embedder", report_key="heldout_two_stage", report_name="held-out, all",
    )  # fmt: skip


def _echo_stage(
    name: str, path: Path, model_version: str | None, *, version_key: str, detail: str,
    report_key: str, report_name: str,
) -> None:  # fmt: skip
    """`model info`'s lines on a stage beside the model, from its .json: its version and
    `detail` (a key of the .json), whether it is made for this model, its held-out score."""
    described = path.with_suffix(".json")
    if not described.is_file():
        click.echo(f"{name + ':':<18}none ({path} not found; `listener model train` writes it)")
        return
    stage = json.loads(described.read_text(encoding="utf-8"))
    paired = stage.get("pairs_with") == model_version
    click.echo(
        f"{name + ':':<18}{stage.get(version_key)} ({detail} {stage.get(detail)}), "
        + ("made for this model" if paired else f"NOT for this model: {stage.get('pairs_with')}")
    )
    report = (stage.get(report_key) or {}).get("overall", {})
    if report:
        click.echo(
            f"{report_name + ':':<18}macro-F1 {report['macro_f1']:.3f}, uncertain "
            f"{report['uncertain_rate']:.3f} on {report['rows']} rows"
        )


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- corrections, review, backfill ------------------------------------------------------------


@click.command("label")
@click.argument("item", type=int)
@click.argument("labels", nargs=-1, type=FUNCTION)
@click.option("--by", help="Who made the correction (kept with it).")
@click.option(
    "--clear", is_flag=True, help="Remove ITEM's correction: the model's labels count again."
)
@click.pass_obj
@handle_errors
def label_command(
    obj: Context, item: int, labels: tuple[str, ...], by: str | None, clear: bool
) -> None:
    """Set ITEM's labels by hand (1-2 labels; they always win over the model).

    ITEM is the item id shown by `search`, `review` and the `items` table. LABELS are
    function names in any case or their short forms: mkt (marketing), pr (communication),
    hr (human_resources), cs (customer_service), bi (business_intelligence), other.
    `--clear` undoes a correction.
    """
    if clear and labels:
        raise click.UsageError("give LABELS or --clear, not both")
    if not clear and not labels:
        raise click.UsageError("give one or two LABELS (or --clear to remove a correction)")
    if len(set(labels)) != len(labels) or len(labels) > 2:
        raise click.BadParameter("give one or two different labels", param_hint="LABELS")
    if "other" in labels and len(labels) > 1:
        raise click.BadParameter(
            "'other' cannot be combined with another label", param_hint="LABELS"
        )
    with obj.store() as store:
        before = store.item_brief(item)
        if before is None:
            raise click.ClickException(f"no item with id {item}")
        if clear:
            had = store.clear_labels(item)
            after = store.item_brief(item) or before
        else:
            store.set_labels(item, labels, by=by, now=now_utc())
    was = before["labels"] or ("uncertain" if before["uncertain"] else "unclassified")
    if not clear:
        click.echo(f"item {item}: {', '.join(labels)} (was {was}) - {before['title']}")
    elif had:
        model_says = after["labels"] or ("uncertain" if after["uncertain"] else "unclassified")
        click.echo(
            f"item {item}: correction removed, the model's {model_says} counts again (was {was})"
            f" - {before['title']}"
        )
    else:
        click.echo(f"item {item}: no correction to remove ({was}) - {before['title']}")


@click.command("review")
@LIMIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@click.pass_obj
@handle_errors
def review_command(obj: Context, limit: int, as_json: bool) -> None:
    """The items whose correction would teach the model most, best first.

    Uncertain items and close calls (two labels near each other, or a low best score),
    those from feeds nobody has corrected yet first. Correct one with
    `listener label ITEM LABEL...`.
    """
    from listener.classify.model import rank_for_review

    with obj.store() as store:
        candidates = store.review_items(_REVIEW_POOL)
    for row in candidates:
        row["scores"] = json.loads(row["scores"])
    chosen = rank_for_review(candidates, limit)
    for item in chosen:
        if as_json:
            click.echo(json.dumps(dict(item), ensure_ascii=False))
        else:
            top = sorted(item["scores"].items(), key=lambda pair: -pair[1])[:3]
            guesses = ", ".join(f"{label} {score:.2f}" for label, score in top)
            click.echo(
                f"{item['id']:>7}  {item['title'][:80]}\n         {guesses}"
                f"  (feed corrections {item['feed_corrections']})  {item['url'] or ''}"
            )
    if not as_json:
        click.echo(f"{plural(len(chosen), 'item')} to review", err=True)


@click.command("reclassify")
@SINCE_OPTION
@click.pass_obj
@handle_errors
def reclassify_command(obj: Context, since: int | None) -> None:
    """Classify the stored items the current model has not classified yet.

    Saved batch by batch: an interrupted run resumes where it stopped. Human corrections
    are never touched.
    """
    from listener.jobs.classify import reclassify_items

    classifier = _load(obj)
    with obj.store() as store:
        store.record_model(classifier.version, {"path": str(model_path(obj.settings))}, now_utc())
        cutoff = since_time(since)
        total = store.count_to_classify(classifier.version, since=cutoff)
        with click.progressbar(
            length=total, label=f"classifying with {classifier.version}", file=sys.stderr
        ) as bar:
            done = reclassify_items(
                store,
                classifier,
                since=cutoff,
                now=now_utc(),
                batch_size=obj.settings.classifier.batch_size,
                on_batch=bar.update,
            )
    click.echo(f"{plural(done, 'item')} classified with model {classifier.version}")


@click.command("refine")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Re-score at most N items, newest first (default: every one waiting).",
)
@click.pass_obj
@handle_errors
def refine_command(obj: Context, limit: int | None) -> None:
    """Re-score with the second stage the items the current model left uncertain.

    The daemon does this after its polls, a few hundred items at a time; this runs it once,
    for a one-shot `listener poll` or a backlog. Saved batch by batch: an interrupted run
    resumes where it stopped. Human corrections are never touched.
    """
    import threading

    from listener.app import load_model, load_second_stage
    from listener.daemon import install_signal_handlers
    from listener.jobs.refine import refine_uncertain

    classifier = load_model(obj.settings)
    stage = load_second_stage(obj.settings, classifier)
    with obj.store() as store:
        store.record_model(classifier.version, {"path": str(model_path(obj.settings))}, now_utc())
        waiting = store.count_to_refine(classifier.version)
        total = min(waiting, limit) if limit else waiting
        stop = threading.Event()  # Ctrl-C or SIGTERM: stop after the batch in hand, saved
        restore = install_signal_handlers(stop, event="refine_stopping")
        try:
            with click.progressbar(
                length=total, label=f"re-scoring with {stage.head.version}", file=sys.stderr
            ) as bar:
                done = refine_uncertain(
                    store,
                    classifier,
                    stage,
                    now=now_utc(),
                    limit=total,
                    stop=stop,
                    on_batch=bar.update,
                )
        finally:
            restore()
        left = store.count_to_refine(classifier.version)
    click.echo(
        f"{plural(done, 'item')} re-scored by the second stage {stage.head.version}"
        + (f", {left} still waiting" if left else "")
    )
