from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from listener.config import (
    Settings,
    cache_folder,
    load_settings,
    model_path,
    parse_duration_minutes,
    parse_settings,
    resolve_path,
)
from listener.errors import ConfigError

ROOT = Path(__file__).parent.parent


def test_shipped_config_equals_the_embedded_defaults() -> None:
    shipped = load_settings(ROOT / "config" / "listener.toml", {})
    assert dataclasses.replace(shipped, source=None) == Settings()


def test_paths_resolve_against_the_settings_file_or_the_shipped_defaults(tmp_path: Path) -> None:
    # Built-in defaults are those of the shipped file: the starter feeds beside it.
    defaults = Settings()
    assert resolve_path(defaults, defaults.import_opml_on_init) == ROOT / "config" / "feeds.opml"
    assert model_path(defaults) == ROOT / "models" / "classifier.skops"
    config = tmp_path / "etc" / "listener.toml"
    config.parent.mkdir()
    config.write_text('import_opml_on_init = "mine.opml"\n[classifier]\nmodel_path = "m.skops"\n')
    settings = load_settings(config, {})
    assert resolve_path(settings, settings.import_opml_on_init) == config.parent / "mine.opml"
    assert model_path(settings) == config.parent / "m.skops"
    assert resolve_path(settings, "/abs/feeds.opml") == Path("/abs/feeds.opml")


def test_parse_settings_reports_every_problem_with_its_key() -> None:
    raw = {
        "poll": {"interval_minutes": 0, "timeout": 3, "max_body_mb": "big"},
        "logging": {"format": "xml"},
        "feeds": [
            {"url": "https://ok.example/feed"},
            {"url": "ftp://example.com/feed"},
            {"tags": ["x"]},
        ],
        "colour": "blue",
    }
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, {})
    problems = info.value.problems
    assert "poll.interval_minutes: must be > 0, got 0" in problems
    assert "poll.timeout: unknown setting" in problems
    assert "poll.max_body_mb: expected float, got str 'big'" in problems
    assert "logging.format: must be one of auto, console, json, got 'xml'" in problems
    assert "feeds[1].url: not an http(s) URL: 'ftp://example.com/feed'" in problems
    assert "feeds[2].url: required" in problems
    assert "colour: unknown setting" in problems
    assert len(problems) == 7


@pytest.mark.parametrize(
    ("sender", "valid"),
    [
        ("listener <listener@localhost>", True),
        ("veille@example.com", True),
        ('"Veille, équipe RH" <veille@example.fr>', True),
        ("listener", False),
        ("listener <>", False),
        ("", False),
    ],
)
def test_the_digests_sender_must_be_an_address(sender: str, valid: bool) -> None:
    raw = {"digest": {"sender": sender}}
    if valid:
        assert parse_settings(raw, {}).digest.sender == sender
        return
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, {})
    assert info.value.problems == [f"digest.sender: not an email address: {sender!r}"]


def test_parse_settings_builds_frozen_feeds() -> None:
    settings = parse_settings(
        {"feeds": [{"url": "https://a.example/rss", "tags": ["hr"], "interval_minutes": 30}]}, {}
    )
    assert settings.feeds[0].tags == ("hr",)
    assert settings.feeds[0].interval_minutes == 30
    with pytest.raises(AttributeError):
        settings.database = "x"  # type: ignore[misc]


def test_load_settings_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", {})


def test_load_settings_bad_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[poll]\ninterval_minutes = = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML.*line 2"):
        load_settings(path, {})


def test_bool_is_not_accepted_as_a_number() -> None:
    with pytest.raises(ConfigError, match="expected int, got bool"):
        parse_settings({"poll": {"max_redirects": True}}, {})


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30m", 30), ("2h", 120), ("7d", 10080), ("1w", 10080), ("45", 45), (" 3 H ", 180)],
)
def test_parse_duration_minutes(text: str, minutes: int) -> None:
    assert parse_duration_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", "0m", "-3h", "soon", "3y"])
def test_parse_duration_minutes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_minutes(text)


def test_every_toml_key_is_commented() -> None:
    """Each setting line in config/listener.toml has a comment line right above it."""
    lines = (ROOT / "config" / "listener.toml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith(("#", "[")) and "=" in line:
            assert lines[index - 1].startswith("#"), f"uncommented setting: {line}"
    tomllib.loads("\n".join(lines))


def test_a_recipient_that_omits_a_key_gets_the_value_the_default_file_documents() -> None:
    """Every key of the shipped file's [[recipients]] entry is the built-in default for a
    recipient that leaves it out, or its comment says which value applies "when omitted",
    or it is required: the documented defaults cannot drift from the code again."""
    lines = (ROOT / "config" / "listener.toml").read_text().splitlines()
    (documented,) = tomllib.loads("\n".join(lines))["recipients"]
    minimal = parse_settings({"recipients": [{"name": "ana", "email": "ana@example.com"}]}, {})
    (recipient,) = minimal.recipients
    assert recipient.send_when_empty is True  # documented as true, once was false
    comments = {
        line.split("=")[0].strip(): lines[index - 1]
        for index, line in enumerate(lines)
        if index > 0 and "=" in line and not line.startswith(("#", "["))
    }
    assert set(documented) == {f.name for f in dataclasses.fields(recipient)}
    for key, value in documented.items():
        actual = getattr(recipient, key)
        expected = tuple(value) if isinstance(value, list) else value
        if key in ("name", "email"):
            assert "Required." in comments[key]
        elif actual != expected:
            assert f'"{actual}" when omitted' in comments[key], f"recipients.{key}"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LISTENER_CACHE_DIR": "/srv/cache", "XDG_CACHE_HOME": "/x"}, "/srv/cache"),
        ({"LISTENER_CACHE_DIR": "", "HOME": "/home/ana"}, None),  # empty: no cache
        ({"XDG_CACHE_HOME": "/x", "HOME": "/home/ana"}, "/x/listener"),
        ({"HOME": "/home/ana"}, "/home/ana/.cache/listener"),
        ({}, None),
    ],
)
def test_cache_folder_follows_the_environment(
    environ: dict[str, str], expected: str | None
) -> None:
    assert cache_folder(environ) == (Path(expected) if expected else None)
    assert parse_settings({}, environ).cache_dir == cache_folder(environ)
