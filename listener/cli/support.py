"""Pieces every command module shares: the lazily loaded settings and store, error
handling that turns ListenerError into one clear message, and option types."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from listener.config import (
    ConfigFile,
    Settings,
    choose_config_file,
    load_settings,
    parse_duration_minutes,
    resolve_path,
)
from listener.domain import ItemFilter, parse_label
from listener.errors import ListenerError
from listener.feeds.opml import parse_opml
from listener.logs import configure_logging, resolve_format
from listener.store import Store, open_store
from listener.whole_file import replacing

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    config_path: Path | None
    db_path: Path | None
    log_format: str | None
    log_level: str | None
    config_from_env: bool = False  # config_path came from LISTENER_CONFIG, not --config
    _settings: Settings | None = None
    _config_file: ConfigFile | None = None

    @property
    def config_file(self) -> ConfigFile:
        """The settings file in effect and how it was found (`ConfigFile.describe`)."""
        if self._config_file is None:
            self._config_file = choose_config_file(
                self.config_path,
                from_env=self.config_from_env,
                environ=os.environ,
                cwd=Path.cwd(),
            )
        return self._config_file

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            path = self.config_file.path
            self._settings = load_settings(path, os.environ)
            self.configure_logging(cache=False)
        return self._settings

    def configure_logging(self, *, cache: bool) -> None:
        """Logs as the settings and options say. Only the long-lived daemon caches loggers:
        a cached logger keeps its configuration for the life of the process, which a
        one-shot command does not need and an in-process test must not inherit."""
        logging_settings = self.settings.logging
        configure_logging(
            resolve_format(self.log_format or logging_settings.format),
            self.log_level or logging_settings.level,
            cache=cache,
        )

    def database_path(self) -> Path:
        return self.db_path or Path(self.settings.database)

    @contextmanager
    def store(self) -> Iterator[Store]:
        path = self.database_path()
        created = not path.exists()
        store = open_store(path, busy_timeout_s=self.settings.busy_timeout_s)
        try:
            if created:
                _import_default_feeds(self.settings, store)
            yield store
        finally:
            store.close()


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`1 item`, `0 items`, `2 watches`: a count with its noun, singular when it is one."""
    return f"{n} {noun}" if n == 1 else f"{n} {nouns or noun + 's'}"


def now_utc() -> datetime:
    return datetime.now(UTC)


def _import_default_feeds(settings: Settings, store: Store) -> None:
    """A new database starts with the feeds of `import_opml_on_init`, when that file exists."""
    if not settings.import_opml_on_init:
        return
    path = resolve_path(settings, settings.import_opml_on_init)
    if not path.is_file():
        return
    feeds, _problems = parse_opml(path.read_bytes())
    now = now_utc()
    for feed in feeds:
        store.add_feed(feed.url, now=now, tags=feed.tags, title=feed.title)
    click.echo(f"initialised {store.path} with {plural(len(feeds), 'feed')} from {path}", err=True)


def handle_errors(func: F) -> F:
    """ListenerError → one clear message on stderr and exit 1, never a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ListenerError as exc:
            raise click.ClickException(str(exc)) from exc

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


@contextmanager
def output_file(path: Path) -> Iterator[IO[str]]:
    """Where a command writes its output: stdout for "-", else a UTF-8 file that replaces
    `path` whole once the block ends without an error. A full disk or an error half-way
    keeps the file that was there and says `cannot write PATH: …` (one line, exit 1)."""
    if str(path) == "-":
        with click.open_file("-", "w", encoding="utf-8") as stdout:  # left open
            yield stdout
        return
    if not path.parent.is_dir():  # a typo in the folder is an error, not a new folder
        raise click.ClickException(f"cannot write {path}: no folder {path.parent}")
    try:
        with replacing(path) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")  # csv writes \r\n
            try:
                yield text
            finally:
                text.detach()  # flushed; `replacing` closes the file
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


class Duration(click.ParamType[int, Any]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration_minutes(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def since_time(minutes: int | None) -> datetime | None:
    return None if minutes is None else now_utc() - timedelta(minutes=minutes)


# Options several commands share, written once so their names and help stay the same.
MODEL_OPTION = click.option(
    "--model",
    "model_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A .skops model file (default: the configured model).",
)
LIMIT_OPTION = click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="At most this many items.",
)
SINCE_OPTION = click.option(
    "--since", type=DURATION, help="Only items published in the last 7d, 24h…"
)
WATCH_OPTION = click.option("--watch", help="Only items that mention this watch (by name).")


class Function(click.ParamType[str, Any]):
    """A business function as people type it: any case, or a short form (mkt, pr, hr, cs, bi)."""

    name = "function"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_label(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


FUNCTION = Function()


def item_filter_options(func: F) -> F:
    """The options that choose items, shared by `search`, `export` and `stats`: their
    values arrive as keyword arguments that `item_filter` reads."""
    options = [
        SINCE_OPTION,
        click.option("--feed", "feed_url", help="Only items of this feed URL."),
        click.option("--tag", help="Only items of feeds with this tag."),
        WATCH_OPTION,
        click.option(
            "--function",
            "functions",
            type=FUNCTION,
            multiple=True,
            help="Only items of this business function (repeatable; a person's correction"
            " wins over the model; short forms mkt, pr, hr, cs, bi).",
        ),
        click.option(
            "--uncertain",
            is_flag=True,
            help="Only items the model was unsure of (with --function: by its best guess).",
        ),
        click.option(
            "--min-score",
            type=click.FloatRange(0.0, 1.0),
            help="Only items whose label (of --function, when given) scores at least this;"
            " a person's label counts 1.0.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def item_filter(store: Store, options: dict[str, Any]) -> ItemFilter:
    """The ItemFilter the item_filter_options ask for; a --watch that names no watch is a
    usage error."""
    check_watch_name(store, options["watch"])
    check_feed_and_tags(store, options["feed_url"], (options["tag"],) if options["tag"] else ())
    return ItemFilter(
        since=since_time(options["since"]),
        feed_url=options["feed_url"],
        tag=options["tag"],
        watch=options["watch"],
        functions=tuple(dict.fromkeys(options["functions"])),
        uncertain=options["uncertain"],
        min_score=options["min_score"],
    )


def check_watch_name(store: Store, name: str | None) -> None:
    """A --watch that names no watch is a usage error, not an empty result."""
    if name is not None and name not in {row.name for row in store.list_watches()}:
        known = ", ".join(row.name for row in store.list_watches()) or "none yet"
        raise click.BadParameter(f"no watch named {name!r} (known: {known})", param_hint="--watch")


def check_feed_and_tags(store: Store, feed_url: str | None, tags: tuple[str, ...]) -> None:
    """A --feed or --tag that names no feed is a usage error, not an empty result."""
    if feed_url is None and not tags:
        return
    feeds = store.list_feeds()
    if feed_url is not None and feed_url not in {row.url for row in feeds}:
        hint = "see `listener feeds list`" if feeds else "no feeds yet"
        raise click.BadParameter(f"no feed with URL {feed_url!r} ({hint})", param_hint="--feed")
    known = sorted({tag for row in feeds for tag in row.tags})
    for tag in tags:
        if tag not in known:
            listed = ", ".join(known) or "none yet"
            raise click.BadParameter(
                f"no feed has tag {tag!r} (known: {listed})", param_hint="--tag"
            )
