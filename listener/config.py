"""Settings: parsed once from TOML into frozen dataclasses, every problem reported at once.

Pure apart from `load_settings` and `choose_config_file`, which read files. Precedence: the
defaults (the same values, commented, in config/listener.toml), then one settings file (the
one given with --config or LISTENER_CONFIG, else the first of ./listener.toml, the user's
config folder and /etc/listener/listener.toml that exists), then environment variables,
which are for secrets only.

`Settings` holds the components' own settings (`PollPolicy`, `FetchLimits`, `SmtpSettings`,
`SpikeRule`, defined with their defaults in domain.py), so nothing copies them field by
field. Their keys keep the TOML layout: [poll] holds both the policy's and the fetch limits'
keys, [alerts] the spike rule's, and `poll.max_body_mb` sets `FetchLimits.max_body_bytes`.
"""

from __future__ import annotations

import dataclasses
import email.utils
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from listener.domain import (
    LABELS,
    WATCH_KINDS,
    FetchLimits,
    PollPolicy,
    Recipient,
    SmtpSecurity,
    SmtpSettings,
    SpikeRule,
    Watch,
    is_http_url,
)
from listener.errors import ConfigError, QuerySyntaxError
from listener.shipped import shipped_path
from listener.watches.query import parse_query

SECRET_ENV = {"smtp_password": "LISTENER_SMTP_PASSWORD"}


@dataclass(frozen=True, slots=True)
class PollSettings:
    """[poll]: when to poll (policy), how to fetch (limits), and the poller's own settings."""

    policy: PollPolicy = field(default_factory=PollPolicy)
    limits: FetchLimits = field(default_factory=FetchLimits)
    parse_workers: int = 0
    parse_memory_mb: int = 192  # a worker's memory beyond what it holds once started
    parse_timeout_s: float = 30.0
    silent_after_days: int = 7


@dataclass(frozen=True, slots=True)
class FeedSetting:
    url: str
    tags: tuple[str, ...] = ()
    interval_minutes: int | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class ClassifierSettings:
    model_path: str = ""
    uncertain_below: float = 0.5
    batch_size: int = 1000
    refine: bool = True
    refine_every_minutes: int = 5
    refine_max_items: int = 200


@dataclass(frozen=True, slots=True)
class DigestSettings:
    sender: str = "listener <listener@localhost>"
    outbox: str = "outbox"
    catch_up_hours: int = 12
    check_every_minutes: int = 5
    claim_timeout_minutes: int = 15
    message_domain: str = "listener.localhost"


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    poll_every_minutes: int = 5
    heartbeat_s: int = 30
    maintenance_at: str = "03:30"
    keep_polls_days: int = 90


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """[alerts]: whether and how often to check, the spike rule, what an alert shows."""

    enabled: bool = True
    check_every_minutes: int = 60
    rule: SpikeRule = field(default_factory=SpikeRule)
    top_items: int = 5


DEFAULT_RECIPIENT = Recipient(
    name="team",
    email="team@localhost",
    timezone="Europe/Paris",
    send_at="07:30",
)


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    format: str = "auto"
    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class Settings:
    database: str = "listener.db"
    busy_timeout_s: float = 5.0
    import_opml_on_init: str = "feeds.opml"
    poll: PollSettings = field(default_factory=PollSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    recipients: tuple[Recipient, ...] = (DEFAULT_RECIPIENT,)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    feeds: tuple[FeedSetting, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)
    watches: tuple[Watch, ...] = ()
    # Not a TOML key: where the settings came from (for check-config and relative paths).
    source: str | None = None
    # Not a TOML key: where listener keeps what it can rebuild (the decompressed language
    # model); from CACHE_ENV, else $XDG_CACHE_HOME/listener or ~/.cache/listener; None: none.
    cache_dir: Path | None = None


# Component settings whose keys sit in the enclosing table: [poll] interval_minutes, not
# [poll.policy].
_INLINE: frozenset[tuple[type[Any], str]] = frozenset(
    {(PollSettings, "policy"), (PollSettings, "limits"), (AlertSettings, "rule")}
)
# Fields no TOML key sets: the password comes from the environment only (SECRET_ENV), the
# others are the code's business.
_NOT_IN_FILE: frozenset[tuple[type[Any], str]] = frozenset(
    {
        (FetchLimits, "user_agent"),
        (SmtpSettings, "password"),
        (SmtpSettings, "retry_backoff_s"),
    }
)
# Fields set by a TOML key of another name and unit: (key, field units per key unit).
_SCALED: dict[tuple[type[Any], str], tuple[str, int]] = {
    (FetchLimits, "max_body_bytes"): ("max_body_mb", 1024 * 1024),
}


_HH_MM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_CHOICES: dict[str, tuple[str, ...]] = {
    "smtp.security": get_args(SmtpSecurity),
    "logging.format": ("auto", "console", "json"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}
_POSITIVE = re.compile(
    r"(_minutes|_s|_mb|_hours|_days|max_redirects|max_in_flight|max_per_host|items_per_section"
    r"|threshold_sd|min_count|top_items|max_items)$"
)
NAME_PATTERN = re.compile(r"[\w.-]+")  # recipient and watch names: safe in file names and URLs


def parse_settings(
    raw: Mapping[str, Any], environ: Mapping[str, str], *, source: str | None = None
) -> Settings:
    """Validate a TOML document; raise ConfigError listing every problem with its key."""
    problems: list[str] = []
    values: Settings = _build(Settings, raw, "", problems, skip=frozenset({"source", "cache_dir"}))
    if values is not None:
        if not _is_address(email.utils.parseaddr(values.digest.sender)[1]):
            # smtplib would send it as `MAIL FROM:<word>`: refused or filtered, hours later.
            problems.append(f"digest.sender: not an email address: {values.digest.sender!r}")
        problems += _check_recipients(values.recipients)
        problems += _check_watches(values.watches)
    if problems:
        raise ConfigError(problems)
    smtp = dataclasses.replace(values.smtp, password=environ.get(SECRET_ENV["smtp_password"], ""))
    return dataclasses.replace(values, source=source, smtp=smtp, cache_dir=cache_folder(environ))


CACHE_ENV = "LISTENER_CACHE_DIR"


def cache_folder(environ: Mapping[str, str]) -> Path | None:
    """Where to keep what can be rebuilt: CACHE_ENV (empty: nowhere), else the user's cache
    folder ($XDG_CACHE_HOME/listener, by default ~/.cache/listener)."""
    if CACHE_ENV in environ:
        return Path(environ[CACHE_ENV]) if environ[CACHE_ENV] else None
    base = environ.get("XDG_CACHE_HOME") or (
        str(Path(environ["HOME"]) / ".cache") if environ.get("HOME") else ""
    )
    return Path(base) / "listener" if base else None


def _is_address(text: str) -> bool:
    return re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", text) is not None


def _check_recipients(recipients: tuple[Recipient, ...]) -> list[str]:
    problems = []
    names: set[str] = set()
    for index, recipient in enumerate(recipients):
        key = f"recipients[{index}]"
        if recipient is None:
            continue
        if recipient.name in names:
            problems.append(f"{key}.name: {recipient.name!r} is used twice")
        names.add(recipient.name)
        if not NAME_PATTERN.fullmatch(recipient.name):
            problems.append(f"{key}.name: use letters, digits, '.', '-' or '_' only")
        if not _is_address(recipient.email):
            problems.append(f"{key}.email: not an email address: {recipient.email!r}")
        try:
            ZoneInfo(recipient.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"{key}.timezone: unknown time zone {recipient.timezone!r}")
        if not _HH_MM.fullmatch(recipient.send_at):
            problems.append(f"{key}.send_at: expected HH:MM, got {recipient.send_at!r}")
        if recipient.webhook_url and not is_http_url(recipient.webhook_url):
            problems.append(f"{key}.webhook_url: not an http(s) URL")
        if recipient.webhook_digest and not recipient.webhook_url:
            problems.append(f"{key}.webhook_digest: needs a webhook_url")
        for label in recipient.functions:
            if label not in LABELS:
                problems.append(f"{key}.functions: unknown function {label!r}")
        if recipient.items_per_section < 1:
            problems.append(f"{key}.items_per_section: must be >= 1")
    return problems


def check_watch(watch: Watch) -> list[str]:
    """Problems with one watch, as "field: message" (config and `listener watch add`)."""
    problems = []
    if not NAME_PATTERN.fullmatch(watch.name):
        problems.append(f"name: {watch.name!r}: use letters, digits, '.', '-' or '_' only")
    if watch.kind not in WATCH_KINDS:
        problems.append(f"kind: must be one of {', '.join(WATCH_KINDS)}, got {watch.kind!r}")
    try:
        parse_query(watch.query)
    except QuerySyntaxError as exc:
        problems.append(f"query: {exc.message} at position {exc.position} in {watch.query!r}")
    return problems


def _check_watches(watches: tuple[Watch, ...]) -> list[str]:
    problems = []
    names: set[str] = set()
    for index, watch in enumerate(watches):
        if watch is None:
            continue
        if watch.name in names:
            problems.append(f"watches[{index}].name: {watch.name!r} is used twice")
        names.add(watch.name)
        problems += [f"watches[{index}].{problem}" for problem in check_watch(watch)]
    return problems


# The places a settings file is looked for, first found wins, when none is given; this
# variable (paths separated by os.pathsep) replaces them, for packagers and for the tests,
# which must never read the host's /etc/listener or ~/.config/listener.
CONFIG_SEARCH_ENV = "LISTENER_CONFIG_SEARCH"
SYSTEM_CONFIG = Path("/etc/listener/listener.toml")


def config_search_paths(environ: Mapping[str, str], cwd: Path) -> tuple[Path, ...]:
    """Where a settings file is looked for, in order: ./listener.toml, the user's config
    folder ($XDG_CONFIG_HOME/listener/listener.toml, by default ~/.config/…), then
    /etc/listener/listener.toml; or the paths LISTENER_CONFIG_SEARCH lists."""
    if CONFIG_SEARCH_ENV in environ:
        return tuple(Path(p) for p in environ[CONFIG_SEARCH_ENV].split(os.pathsep) if p)
    paths = [cwd / "listener.toml"]
    user = environ.get("XDG_CONFIG_HOME") or (
        str(Path(environ["HOME"]) / ".config") if environ.get("HOME") else ""
    )
    if user:
        paths.append(Path(user) / "listener" / "listener.toml")
    paths.append(SYSTEM_CONFIG)
    return tuple(paths)


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """Which settings file applies (None: the built-in defaults) and how it was chosen."""

    path: Path | None
    found_by: Literal["--config", "LISTENER_CONFIG", "search", "defaults"]
    searched: tuple[Path, ...] = ()

    def describe(self) -> str:
        """One line for people: `config: /etc/listener/listener.toml (found in the search
        path)`, or the built-in defaults and where no file was found."""
        if self.path is not None:
            how = {
                "--config": "given with --config",
                "LISTENER_CONFIG": "from LISTENER_CONFIG",
                "search": "found",
            }
            return f"{self.path} ({how.get(self.found_by, self.found_by)})"
        where = ", ".join(str(p) for p in self.searched) or "nowhere"
        return f"built-in defaults (no settings file in {where})"


def choose_config_file(
    given: Path | None, *, from_env: bool, environ: Mapping[str, str], cwd: Path
) -> ConfigFile:
    """The file given (with --config, or LISTENER_CONFIG when `from_env`), else the first
    of the search paths that exists, else the defaults."""
    if given is not None:
        return ConfigFile(given, "LISTENER_CONFIG" if from_env else "--config")
    searched = config_search_paths(environ, cwd)
    for path in searched:
        if path.is_file():
            return ConfigFile(path, "search", searched)
    return ConfigFile(None, "defaults", searched)


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read and validate the TOML file at `path`, or return the defaults when it is None."""
    if path is None:
        return parse_settings({}, environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return parse_settings(raw, environ, source=str(path))


def resolve_path(settings: Settings, value: str) -> Path:
    """A path from the config is relative to the config file's folder.

    With no settings file, the values are the built-in defaults, which are those of the
    default file shipped with listener: relative to its folder (the starter feeds' OPML).
    """
    path = Path(value)
    if path.is_absolute():
        return path
    if settings.source is None:
        return shipped_path("config") / path
    return Path(settings.source).parent / path


SHIPPED_MODEL = shipped_path("models/classifier.skops")


def model_path(settings: Settings) -> Path:
    """The configured model file, or the one shipped with listener."""
    if not settings.classifier.model_path:
        return SHIPPED_MODEL
    return resolve_path(settings, settings.classifier.model_path)


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective settings as the TOML file spells them, secrets hidden, for
    `check-config`."""
    data: dict[str, Any] = _as_toml(settings)
    data["smtp_password"] = "********" if settings.smtp.password else "(not set)"
    for recipient in data.get("recipients", []):
        if recipient.get("webhook_url"):  # its path is the webhook's secret token
            parts = urlsplit(recipient["webhook_url"])
            recipient["webhook_url"] = f"{parts.scheme}://{parts.netloc}/********"
    return data


def _as_toml(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_as_toml(each) for each in value]
    if isinstance(value, Path):
        return str(value)
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    cls = type(value)
    data: dict[str, Any] = {}
    for f in fields(value):
        if (cls, f.name) in _NOT_IN_FILE:
            continue
        inner = getattr(value, f.name)
        if (cls, f.name) in _INLINE:
            data.update(_as_toml(inner))
        elif (cls, f.name) in _SCALED:
            key, scale = _SCALED[cls, f.name]
            data[key] = inner / scale
        else:
            data[f.name] = _as_toml(inner)
    return data


def _build(
    cls: type[Any], raw: Any, prefix: str, problems: list[str], skip: frozenset[str] = frozenset()
) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(f"{prefix.rstrip('.') or '(top level)'}: expected a table")
        return cls() if _has_defaults(cls) else None
    known = _toml_keys(cls) - skip
    for key in raw:
        if key not in known:
            problems.append(f"{prefix}{key}: unknown setting")
    return _fill(cls, raw, prefix, problems, skip)


def _toml_keys(cls: type[Any]) -> set[str]:
    """The keys of the TOML table that `cls` is read from, inline components included."""
    hints = get_type_hints(cls)
    keys: set[str] = set()
    for f in fields(cls):
        if (cls, f.name) in _INLINE:
            keys |= _toml_keys(hints[f.name])
        elif (cls, f.name) not in _NOT_IN_FILE:
            keys.add(_SCALED.get((cls, f.name), (f.name, 1))[0])
    return keys


def _fill(
    cls: type[Any], raw: Mapping[str, Any], prefix: str, problems: list[str], skip: frozenset[str]
) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    reported = len(problems)
    for f in fields(cls):
        if f.name in skip or (cls, f.name) in _NOT_IN_FILE:
            continue
        if (cls, f.name) in _INLINE:
            kwargs[f.name] = _fill(hints[f.name], raw, prefix, problems, frozenset())
            continue
        key, scale = _SCALED.get((cls, f.name), (f.name, 1))
        if key not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{prefix}{key}: required")
            continue
        hint = float if scale != 1 else hints[f.name]
        value = _convert(hint, raw[key], f"{prefix}{key}", problems)
        kwargs[f.name] = int(value * scale) if scale != 1 and value is not None else value
    try:
        return cls(**kwargs)
    except TypeError:
        return None  # a required field was missing or had the wrong type; already reported
    except ValueError as exc:  # a component's own check (its __post_init__)
        if len(problems) == reported:
            problems.append(f"{prefix.rstrip('.')}: {exc}")
        return None


def _has_defaults(cls: type[Any]) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in fields(cls)
    )


def _convert(hint: Any, value: Any, key: str, problems: list[str]) -> Any:
    origin = get_origin(hint)
    if origin is Literal:  # a closed set of strings: _CHOICES names them
        return _convert(str, value, key, problems)
    if origin in (UnionType, Union):
        inner = [a for a in get_args(hint) if a is not type(None)]
        return _convert(inner[0], value, key, problems)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.", problems)  # type: ignore[arg-type]
    if origin is tuple:
        item_type = get_args(hint)[0]
        if not isinstance(value, list):
            problems.append(f"{key}: expected a list")
            return ()
        return tuple(_convert(item_type, v, f"{key}[{i}]", problems) for i, v in enumerate(value))
    expected = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}[hint]
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, expected):
        problems.append(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        return None
    return _check_value(hint, value, key, problems)


def _check_value(hint: type[Any], value: Any, key: str, problems: list[str]) -> Any:
    name = key.split(".")[-1]
    if name == "url" and not is_http_url(value):
        problems.append(f"{key}: not an http(s) URL: {value!r}")
    if hint in (int, float) and _POSITIVE.search(name) and value <= 0:
        problems.append(f"{key}: must be > 0, got {value!r}")
    if name == "uncertain_below" and not 0 <= value <= 1:
        problems.append(f"{key}: must be between 0 and 1, got {value!r}")
    if name == "batch_size" and value < 1:
        problems.append(f"{key}: must be >= 1, got {value!r}")
    if name == "jitter_fraction" and not 0 <= value < 1:
        problems.append(f"{key}: must be between 0 and 1, got {value!r}")
    if name == "maintenance_at" and not _HH_MM.fullmatch(value):
        problems.append(f"{key}: expected HH:MM (UTC), got {value!r}")
    if name == "port" and not 0 < value < 65536:
        problems.append(f"{key}: not a port number: {value!r}")
    if name == "parse_workers" and value < 0:
        problems.append(f"{key}: must be >= 0 (0 means one per core), got {value!r}")
    choices = _CHOICES.get(key)
    if choices and value not in choices:
        problems.append(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
    return float(value) if hint is float else value


_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_MINUTES = {"m": 1, "min": 1, "h": 60, "d": 1440, "w": 10080}


def parse_duration_minutes(text: str) -> int:
    """'30m', '2h', '7d', '1w' or a bare number of minutes → minutes (> 0)."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (try 30m, 2h, 7d or 1w)")
    unit = (match.group(2) or "m").lower()
    return int(match.group(1)) * _UNIT_MINUTES[unit]
