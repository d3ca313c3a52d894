"""The one assembly point: the services built from the settings (the classifier loaded and
checked once), the daemon's job table, and the daemon around it (heartbeat and signals).

The command line calls in here to run a job or the daemon; nothing in the package imports
this module. Every job is `job(services, now)`: the daemon only decides when it runs.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from listener import __version__
from listener.classify.decision import Classifier, retrain_hint
from listener.classify.deferred import (
    DeferredClassifier,
    ModelFiles,
    model_file_version,
    runtime_path,
)
from listener.config import Settings, model_path
from listener.daemon import DaemonScheduler, ScheduledJob, install_signal_handlers
from listener.errors import ClassifierError
from listener.feeds.fetch import HttpFetcher
from listener.jobs.alerts import alerts_job
from listener.jobs.digest import digest_job, maintenance_job
from listener.jobs.poll import poll_job
from listener.jobs.refine import refine_job
from listener.jobs.services import Job, Services
from listener.store import Store, open_store

if TYPE_CHECKING:
    from listener.classify.embedding import SecondStage

log = structlog.get_logger(__name__)


def load_model(settings: Settings, *, deferred: bool = False) -> Classifier:
    """The configured classifier (or the shipped one), checked; loaded now unless `deferred`
    (then at its first prediction: a poll with nothing new never pays for it).

    It scores from the model's .npz arrays, without scikit-learn; a model saved before those
    existed is read from its .skops pipeline (scikit-learn: ~1.2 s of imports, ~100 MB).
    """
    path, uncertain_below = model_path(settings), settings.classifier.uncertain_below

    def load() -> Classifier:
        from listener.classify.linear import load_runtime_classifier  # numpy: when needed

        runtime = load_runtime_classifier(path, uncertain_below=uncertain_below)
        if runtime is not None:
            return runtime
        from listener.classify.model import load_classifier

        return load_classifier(path, uncertain_below=uncertain_below)

    if not deferred:
        return load()
    classifier = DeferredClassifier(path, load)
    if runtime_path(path).is_file():  # (else the workers could not load it without sklearn)
        classifier.files = ModelFiles(path, uncertain_below)
    return classifier


def record_model(store: Store, settings: Settings, classifier: Classifier, now: datetime) -> None:
    """Note `classifier` as the model in use from `now` (its predictions count from then)."""
    store.record_model(classifier.version, {"path": str(model_path(settings))}, now)


def load_second_stage(
    settings: Settings,
    classifier: Classifier,
    *,
    model_file: Path | None = None,
    threads: int = 1,
) -> SecondStage:
    """The second stage of the configured model (or `model_file`), checked to be made for
    `classifier`; ClassifierError saying why not (the daemon then logs it once, and
    uncertain items keep the poll's prediction)."""
    from listener.classify.embedding import Embedder, SecondStage, read_head  # numpy
    from listener.classify.refine import head_path

    if not settings.classifier.refine:
        raise ClassifierError("the second stage is off (classifier.refine = false)")
    path = head_path(model_file or model_path(settings))
    try:
        head = read_head(path)
    except ValueError as exc:
        raise ClassifierError(str(exc)) from exc
    if head is None:
        raise ClassifierError(
            f"{path} not found: `listener model train` writes the second stage of the model "
            "it trains"
        )
    if head.pairs_with != classifier.version:
        raise ClassifierError(
            f"{path} was made for model {head.pairs_with}, not {classifier.version}: "
            f"{retrain_hint(model_file or model_path(settings))}"
        )
    return SecondStage(head, Embedder(threads), settings.classifier.uncertain_below)


def make_services(
    settings: Settings,
    store: Store,
    *,
    classify: bool = True,
    defer_model: bool = False,
    refine: bool = False,
) -> Services:
    """The services the jobs run on; with `classify`, the model in use is recorded. With
    `defer_model` (one-shot commands), the model is loaded when something needs classifying;
    the daemon loads it at start-up. With `refine`, the second stage too (its head now, the
    sentence model at its first item)."""
    classifier = load_model(settings, deferred=defer_model) if classify else None
    if classifier is not None:
        record_model(store, settings, classifier, _now())
    second_stage = None
    if refine and classifier is not None and settings.classifier.refine:
        try:
            second_stage = load_second_stage(settings, classifier)
        except ClassifierError as exc:
            log.warning("second_stage_unavailable", error=str(exc))
    return Services(
        settings=settings,
        store=store,
        fetcher=HttpFetcher(settings.poll.limits),
        classifier=classifier,
        second_stage=second_stage,
    )


@contextmanager
def open_services(
    settings: Settings,
    store: Store,
    *,
    classify: bool = True,
    defer_model: bool = False,
    refine: bool = False,
) -> Iterator[Services]:
    """make_services, and the fetcher's connections closed at the end."""
    services = make_services(
        settings, store, classify=classify, defer_model=defer_model, refine=refine
    )
    try:
        yield services
    finally:
        services.fetcher.close()


class ModelFollower:
    """The daemon's model follows its file: `listener model train` replaces the configured
    model (its seven files together), and the next poll or refine job loads it, so that
    retraining needs no restart. Called on the job thread before those jobs, so a model
    never changes under a running job. A new model that does not load (or whose second
    stage does not) is logged once and the running one kept; it is tried again each time."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.refused: str | None = None  # the version last logged as not loading

    def __call__(self, now: datetime) -> None:
        services = self.services
        running = services.classifier
        if running is None:
            return
        path = model_path(services.settings)
        version = model_file_version(path)
        if version is None or version == running.version:
            return
        try:
            classifier = load_model(services.settings)
            second_stage = (
                load_second_stage(services.settings, classifier)
                if services.second_stage is not None
                else None
            )
        except ClassifierError as exc:
            if self.refused != version:
                log.warning(
                    "model_reload_failed", model=version, running=running.version, error=str(exc)
                )
                self.refused = version
            return
        services.classifier, services.second_stage = classifier, second_stage
        record_model(services.store, services.settings, classifier, now)
        self.refused = None
        log.info("model_reloaded", previous=running.version, model=classifier.version)


def daemon_jobs(services: Services) -> list[ScheduledJob]:
    """The daemon's job table: what runs, how often. At start they run in this order: the
    poll first, so a new install's first digest reads what it stored."""
    settings = services.settings
    daemon = settings.daemon
    follow_model = ModelFollower(services)

    def scheduled(job: Job, *, classifies: bool = False) -> functools.partial[None]:
        return functools.partial(_run_job, job, services, follow_model if classifies else None)

    jobs = [
        ScheduledJob(
            "poll",
            scheduled(poll_job, classifies=True),
            every_s=daemon.poll_every_minutes * 60,
            jitter_s=5,
        ),
    ]
    if services.second_stage is not None:
        every_s = settings.classifier.refine_every_minutes * 60
        jobs.append(ScheduledJob("refine", scheduled(refine_job, classifies=True), every_s=every_s))
    jobs.append(
        ScheduledJob(
            "digest", scheduled(digest_job), every_s=settings.digest.check_every_minutes * 60
        )
    )
    if settings.alerts.enabled:
        every_s = settings.alerts.check_every_minutes * 60
        jobs.append(ScheduledJob("alerts", scheduled(alerts_job), every_s=every_s))
    jobs.append(
        ScheduledJob(
            "maintenance",
            scheduled(maintenance_job),
            daily_at_utc=daemon.maintenance_at,
            run_at_start=False,
        )
    )
    return jobs


def run_daemon(settings: Settings, store: Store, *, config_note: str = "") -> None:
    """Run the jobs on their schedules until SIGTERM or SIGINT; the job in progress finishes
    first. The caller holds the database's daemon lock (daemon.daemon_lock). `config_note`
    (which settings file is in effect) goes into the start-up log line.

    A second connection writes the heartbeat from its own thread, so `listener status` sees
    a live daemon during a long poll.
    """
    with open_services(settings, store, refine=True) as services:
        beats = open_store(store.path, busy_timeout_s=settings.busy_timeout_s)
        started = _now()
        pid = os.getpid()
        scheduler = DaemonScheduler()

        def heartbeat() -> None:
            classifier = services.classifier  # the model in use now (ModelFollower)
            beats.record_heartbeat(
                pid=pid,
                host=socket.gethostname(),
                version=__version__,
                started_at=started,
                now=_now(),
                next_runs=scheduler.next_runs(),
                model_version=classifier.version if classifier else None,
            )

        jobs = [
            *daemon_jobs(services),
            ScheduledJob(
                "heartbeat",
                heartbeat,
                every_s=settings.daemon.heartbeat_s,
                executor="side",
                quiet=True,
            ),
        ]
        stop = services.stop  # the signal also tells a running poll to wind down
        restore = install_signal_handlers(stop)
        log.info(
            "daemon_starting",
            pid=pid,
            config=config_note,
            database=str(store.path),
            version=__version__,
            model=services.classifier.version if services.classifier else None,
        )
        try:
            scheduler.run_until_stopped(jobs, stop)
        finally:
            restore()
            beats.record_daemon_stopped(pid, _now())
            beats.close()
            log.info("daemon_stopped", pid=pid)


def _run_job(job: Job, services: Services, follow_model: ModelFollower | None) -> None:
    now = _now()
    if follow_model is not None:
        follow_model(now)
    job(services, now)


def _now() -> datetime:
    return datetime.now(UTC)
