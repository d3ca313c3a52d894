"""The docs stay true to the code: schema, settings and command help."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import click
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from listener.cli import cli
from listener.store import open_store

ROOT = Path(__file__).parent.parent
INTERNAL = re.compile(r"^(_sqlite_migrations|items_fts_\w+|sqlite_\w+)$")


def _documented() -> dict[str, list[str]]:
    """Tables from docs/schema.md: each `## `name`` section and the columns of its table."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in (ROOT / "docs" / "schema.md").read_text().splitlines():
        heading = re.match(r"^## `(\w+)`", line)
        if heading:
            current = heading.group(1)
            sections[current] = []
        elif current and (cell := re.match(r"^\| `(\w+)` \|", line)):
            sections[current].append(cell.group(1))
    return sections


def test_schema_doc_matches_a_migrated_database(tmp_path: Path) -> None:
    store = open_store(tmp_path / "x.db")
    db = store.db
    actual = {
        name: [c.name for c in db[name].columns] if name != "items_fts" else []
        for name in [*db.table_names(), *db.view_names()]
        if not INTERNAL.match(name)
    }
    documented = _documented()
    assert sorted(documented) == sorted(actual)
    for name, columns in actual.items():
        if name == "items_fts":
            continue
        assert documented[name] == columns, f"docs/schema.md is out of date for {name}"
    store.close()


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(cli))
def test_every_command_has_help(name: str, command: click.Command) -> None:
    assert command.help, f"`listener {name}` has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"`listener {name} {param.opts[0]}` has no help text"


def test_readme_mentions_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, _ in _commands(cli):
        assert f"listener {name}" in readme or f"`{name}`" in readme, name


def test_the_scikit_learn_requirement_admits_the_shipped_model() -> None:
    """pip must install a scikit-learn that loads the committed model, and no other minor."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (requirement,) = [
        Requirement(dep) for dep in project["dependencies"] if dep.startswith("scikit-learn")
    ]
    metadata = json.loads((ROOT / "models" / "classifier.json").read_text(encoding="utf-8"))
    trained_with = Version(metadata["sklearn_version"])
    assert requirement.specifier.contains(trained_with)
    next_minor = Version(f"{trained_with.major}.{trained_with.minor + 1}.0")
    previous_minor = Version(f"{trained_with.major}.{max(trained_with.minor - 1, 0)}.99")
    assert not requirement.specifier.contains(next_minor)
    assert trained_with.minor == 0 or not requirement.specifier.contains(previous_minor)
