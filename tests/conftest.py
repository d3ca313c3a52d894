"""Shared fixtures: real servers on 127.0.0.1, SQLite files under tmp_path, a pinned clock."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
import time_machine
from hypothesis import settings

from tests.smtp import SmtpServer, smtp_server

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
CLOCK_SHIFT = Path(__file__).parent / "clockshift"

# No per-example deadline: speed is measured in `make bench`, not asserted here, and a first
# example that loads a model (py3langid: half a second on a loaded CI machine) is not a bug.
settings.register_profile("listener", deadline=None)
settings.load_profile("listener")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock",
        metavar="'YYYY-MM-DD HH:MM'",
        help="run the suite with the wall clock moved to this local time (TZ applies), "
        "test processes included: a test that depends on today's date fails at once",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Search no folder for a settings file (the host's ./listener.toml, ~/.config/listener or
    /etc/listener must never leak into a test, nor into the processes tests start), and shift
    the clock before collection, so module-level dates see the shifted "today" too."""
    os.environ["LISTENER_CONFIG_SEARCH"] = ""
    # One cache folder for the session (the decompressed language model, ~65 MB), never the
    # host's ~/.cache; removed at exit.
    os.environ["LISTENER_CACHE_DIR"] = tempfile.mkdtemp(prefix="listener-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LISTENER_CACHE_DIR"], ignore_errors=True)
    value = config.getoption("--clock")
    if not value:
        return
    target = datetime.fromisoformat(value)
    if target.tzinfo is None:
        target = target.astimezone()  # naive: local time, as TZ says
    offset_s = target.timestamp() - time.time()
    traveller = time_machine.travel(target, tick=True)
    traveller.start()
    config.add_cleanup(traveller.stop)
    # Child processes (the daemon, `listener poll`) pick the same shift up in sitecustomize.
    os.environ["LISTENER_TEST_CLOCK_OFFSET_S"] = repr(offset_s)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(CLOCK_SHIFT), os.environ.get("PYTHONPATH")])
    )


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)


@pytest.fixture
def serve_feed(httpserver) -> Callable[..., str]:  # type: ignore[no-untyped-def]
    """Serve a fixture file (or bytes) at /name on the loopback test server; return its URL."""

    def serve(
        name: str,
        body: bytes | None = None,
        content_type: str = "application/rss+xml",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        data = body if body is not None else (DATA / "feeds" / name).read_bytes()
        httpserver.expect_request(f"/{name}").respond_with_data(
            data, status=status, content_type=content_type, headers=headers or {}
        )
        return str(httpserver.url_for(f"/{name}"))

    return serve


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it accepts."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "listener.db"
