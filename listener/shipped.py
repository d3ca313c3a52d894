"""I/O-free: where the files listener ships with live, in a checkout and in a wheel.

The model (`models/`), its training corpus and the default settings and starter feeds
(`config/`) sit at the top of the checkout. A wheel carries copies in `listener/_shipped/`
(setup.py's build hook), so an installed listener finds them without the checkout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_PACKAGED = _PACKAGE / "_shipped"  # a wheel install
_CHECKOUT = _PACKAGE.parent  # a source checkout or an editable install


def shipped_path(relative: str) -> Path:
    """`models/classifier.skops`, `config/feeds.opml`...: the wheel's copy, else the checkout's."""
    packaged = _PACKAGED / relative
    return packaged if packaged.exists() else _CHECKOUT / relative
