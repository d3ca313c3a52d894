"""Packaging hook: a wheel carries the model, its training corpus and the default config.

They live at the top of the checkout (`models/`, `config/`), outside the `listener` package,
so setuptools' package data cannot name them. `build_py` copies them into
`listener/_shipped/` inside the wheel, where `listener.shipped.shipped_path` finds them; an
editable install or a checkout reads them in place instead. Everything else about the build is
in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# Relative to the checkout, and to listener/_shipped/ in the wheel.
SHIPPED = (
    "models/classifier.skops",
    "models/classifier.json",
    "models/classifier.npz",
    "models/classifier.static.npz",
    "models/classifier.static.json",
    "models/classifier.refine.npz",
    "models/classifier.refine.json",
    "models/training/embeddings.npz",
    "models/training/*.csv",
    "models/training/README.md",
    "config/listener.toml",
    "config/feeds.opml",
    "config/listener.service",
)


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads models/ and config/ from the checkout
        target = Path(self.build_lib) / "listener" / "_shipped"
        for pattern in SHIPPED:
            matches = sorted(HERE.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"{pattern}: nothing to ship (run `make model`?)")
            for source in matches:
                destination = target / source.relative_to(HERE)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)


setup(cmdclass={"build_py": BuildWithShippedFiles})
