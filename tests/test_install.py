"""The installed package works without the checkout: build a wheel, install it into a new
virtual environment, and run the commands a new user runs from an empty folder.

Offline: the wheel is built without build isolation, and the new environment sees the test
environment's third-party packages through a .pth line instead of downloading them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# What a source distribution holds (MANIFEST.in): the package, the model, the default config.
SOURCES = ("listener", "models", "config", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a new venv with listener installed from a wheel built from a copy of the tree."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, source],
        check=True,
        cwd=base,
    )
    (wheel,) = wheels.glob("listener-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The test environment's dependencies, after the new venv's own site-packages.
    Path(site, "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        check=True,
        cwd=base,
    )
    return env_dir / "bin"


def listener(
    bin_dir: Path, cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing points back at the checkout.
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    for name in ("LISTENER_TEST_CLOCK_OFFSET_S", "PYTHONPATH"):  # pytest --clock
        if name in os.environ:
            env[name] = os.environ[name]
    return subprocess.run(
        [bin_dir / "listener", "--log-format", "json", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_the_wheel_works_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    where = listener(installed, tmp_path, "model", "info")
    assert where.returncode == 0, where.stderr
    assert "loads and is compatible" in where.stdout
    model_line = next(line for line in where.stdout.splitlines() if line.startswith("model:"))
    assert str(installed.parent) in model_line, "the model is the wheel's own copy"
    assert str(ROOT) not in model_line
    # the wheel carries the poll path's static stage and the e5 stage, made for its model
    assert "static stage:     st-" in where.stdout
    assert where.stdout.count("made for this model") == 2

    line = json.dumps({"id": 1, "summary": "We are hiring 40 engineers in Lyon: apply now!"})
    classified = listener(installed, tmp_path, "classify", stdin=line + "\n")
    assert classified.returncode == 0, classified.stderr
    assert json.loads(classified.stdout)["labels"][0] == "human_resources"

    init = listener(installed, tmp_path, "init")
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "listener.db").is_file()
    assert "feeds from" in init.stderr, "a new database starts with the shipped starter feeds"
    feeds = listener(installed, tmp_path, "feeds", "list", "--json")
    assert feeds.returncode == 0, feeds.stderr
    assert len(json.loads(feeds.stdout)) > 5

    preview = listener(installed, tmp_path, "digest", "--preview")
    assert preview.returncode == 0, preview.stderr
    assert "LISTENER DAILY DIGEST" in preview.stdout
    assert not (tmp_path / "outbox").exists(), "a preview sends nothing"
