"""I/O: structlog configuration. Called once by the CLI; logs go to stderr.

Third-party stdlib logging goes through the same processor chain, so a JSON log stays JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from structlog.contextvars import merge_contextvars
from structlog.processors import JSONRenderer, TimeStamper, dict_tracebacks
from structlog.stdlib import ProcessorFormatter, add_log_level, add_logger_name
from structlog.typing import Processor


def resolve_format(fmt: str) -> Literal["console", "json"]:
    """`auto` means a readable console on a terminal, JSON lines otherwise."""
    if fmt == "auto":
        return "console" if sys.stderr.isatty() else "json"
    return "json" if fmt == "json" else "console"


def configure_logging(fmt: Literal["console", "json"], level: str, *, cache: bool = True) -> None:
    shared: list[Processor] = [
        merge_contextvars,
        add_log_level,
        add_logger_name,
        TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,  # False in tests: capture_logs can't see cached loggers
    )
    renderer: list[Processor] = (
        [dict_tracebacks, JSONRenderer()] if fmt == "json" else [structlog.dev.ConsoleRenderer()]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    logging.basicConfig(handlers=[handler], level=level, force=True)
    # httpx logs every request at INFO; our feed_polled line already says it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # APScheduler logs every run twice at INFO; our job_started/job_finished lines say it.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
