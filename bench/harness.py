"""What the sections that run listener for real share: the feed server's configuration from
the command line, the poll settings it overrides, listener's logs sent to a file, and the
Services the poller runs with (classification on, off, or on when the model exists)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, TextIO

from bench.server import ServerConfig


def server_config(options: argparse.Namespace, changed_fraction: float) -> ServerConfig:
    return ServerConfig(
        feed_count=options.feeds,
        item_count=options.items,
        seed=options.seed,
        changed_fraction=changed_fraction,
        latency_ms=options.latency_ms,
        hosts=max(1, min(options.hosts, options.feeds)),
        gzip=options.gzip,
    )


def poll_overrides(options: argparse.Namespace) -> dict[str, Any]:
    """The [poll] settings given on the command line (the others keep their defaults)."""
    names = {
        "parse_workers": options.parse_workers,
        "max_in_flight": options.max_in_flight,
        "max_per_host": options.max_per_host,
    }
    return {name: value for name, value in names.items() if value is not None}


def log_to(stream: TextIO, level: str = "INFO") -> None:
    """listener's logs as the daemon writes them (JSON lines), to `stream`: stdout is the
    tables."""
    from listener.logs import configure_logging

    configure_logging("json", level)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


def open_services(
    settings: Any, db_path: Path, classify_option: str, *, refine: bool = False
) -> tuple[Any, Any, str]:
    """(store, services, what the report says of classification), as `listener run` builds
    them (with `refine`, the second stage too, as the daemon does); a model that --classify
    on cannot load ends the benchmark with its error."""
    from listener.app import make_services
    from listener.config import model_path
    from listener.errors import ClassifierError
    from listener.store import open_store

    store = open_store(db_path)
    model = model_path(settings)
    classify = classify_option == "on" or (classify_option == "auto" and model.exists())
    try:
        services = make_services(settings, store, classify=classify, refine=refine)
    except ClassifierError as exc:
        store.close()
        raise SystemExit(f"bench: --classify {classify_option}: {exc}") from exc
    classified = f"on ({model})" if classify else f"off (--classify {classify_option})"
    if refine:
        stage = services.second_stage
        classified += f", second stage {stage.head.version if stage else 'unavailable'}"
    return store, services, classified
