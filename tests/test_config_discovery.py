"""One configuration, found where users put it: --config, LISTENER_CONFIG, ./listener.toml,
the user's config folder, /etc/listener; every command says which one it read.

The suite sets LISTENER_CONFIG_SEARCH to nothing (conftest), so no test reads the host's
files; the tests here point it (or HOME, XDG_CONFIG_HOME and the working folder) at their
own temporary folders, and never let a search reach /etc/listener."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from listener.cli import cli
from listener.config import SYSTEM_CONFIG, config_search_paths


def check_config(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "l.db"), *args, "check-config"],
        env=env,
        catch_exceptions=False,
    )


def write_config(path: Path, interval_minutes: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[poll]\ninterval_minutes = {interval_minutes}\n")
    return path


def test_search_paths_are_the_working_folder_the_user_folder_then_etc() -> None:
    cwd = Path("/work/here")
    assert config_search_paths({"HOME": "/home/ana"}, cwd) == (
        cwd / "listener.toml",
        Path("/home/ana/.config/listener/listener.toml"),
        SYSTEM_CONFIG,
    )
    assert config_search_paths({"HOME": "/home/ana", "XDG_CONFIG_HOME": "/cfg"}, cwd)[1] == (
        Path("/cfg/listener/listener.toml")
    )
    assert config_search_paths({}, cwd) == (cwd / "listener.toml", SYSTEM_CONFIG)
    assert config_search_paths({"LISTENER_CONFIG_SEARCH": "/a.toml:/b.toml"}, cwd) == (
        Path("/a.toml"),
        Path("/b.toml"),
    )


def test_the_first_file_found_applies_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, user, system = tmp_path / "here.toml", tmp_path / "user.toml", tmp_path / "etc.toml"
    monkeypatch.setenv("LISTENER_CONFIG_SEARCH", f"{here}:{user}:{system}")
    write_config(system, 45)
    result = check_config(tmp_path)
    assert json.loads(result.stdout)["poll"]["interval_minutes"] == 45
    assert f"config: {system} (found)" in result.stderr
    write_config(user, 30)
    assert json.loads(check_config(tmp_path).stdout)["poll"]["interval_minutes"] == 30
    write_config(here, 20)
    assert json.loads(check_config(tmp_path).stdout)["config_file"] == f"{here} (found)"
    # --config and LISTENER_CONFIG win over the search, and say so.
    given = write_config(tmp_path / "given.toml", 10)
    by_option = check_config(tmp_path, "--config", str(given))
    assert json.loads(by_option.stdout)["poll"]["interval_minutes"] == 10
    assert f"config: {given} (given with --config)" in by_option.stderr
    by_env = check_config(tmp_path, env={"LISTENER_CONFIG": str(given)})
    assert f"config: {given} (from LISTENER_CONFIG)" in by_env.stderr


def test_nothing_found_means_the_built_in_defaults_and_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LISTENER_CONFIG_SEARCH", str(tmp_path / "listener.toml"))
    result = check_config(tmp_path)
    assert json.loads(result.stdout)["poll"]["interval_minutes"] == 60
    assert (
        f"config: built-in defaults (no settings file in {tmp_path / 'listener.toml'})"
        in result.stderr
    )


def test_a_listener_toml_in_the_working_folder_or_the_user_folder_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real search: the working folder and the user folder come before /etc/listener,
    # so the host's /etc is never reached.
    monkeypatch.delenv("LISTENER_CONFIG_SEARCH")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    user = write_config(tmp_path / "xdg" / "listener" / "listener.toml", 30)
    assert f"config: {user} (found)" in check_config(tmp_path).stderr
    local = write_config(work / "listener.toml", 20)
    result = check_config(tmp_path)
    assert f"config: {local} (found)" in result.stderr
    assert json.loads(result.stdout)["poll"]["interval_minutes"] == 20


def test_status_names_the_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "listener.toml", 20)
    (config.parent / "bare").write_text("")
    monkeypatch.setenv("LISTENER_CONFIG_SEARCH", str(config))
    result = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "l.db"), "status"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert f"config:   {config} (found)" in result.stdout
    assert f"database: {tmp_path / 'l.db'}" in result.stdout
