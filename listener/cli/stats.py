"""`listener stats`: items per business function, per local day and per feed, counted as the
digest counts them."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from listener.cli.support import DURATION, Context, check_feed_and_tags, handle_errors, now_utc
from listener.digest.periods import local_days
from listener.domain import LABEL_ALIASES, LABELS
from listener.store import TOTAL, UNCERTAIN

_SHORT = {label: short for short, label in reversed(list(LABEL_ALIASES.items()))}
_HEADERS = {**_SHORT, UNCERTAIN: "uncertain", TOTAL: "items"}
_COLUMNS = (*LABELS, UNCERTAIN, TOTAL)
# Up to a month, every day has its row, quiet ones included; beyond, only days with items.
LIST_EVERY_DAY_UP_TO = 31


@click.command("stats")
@click.option(
    "--since",
    type=DURATION,
    default="7d",
    show_default=True,
    help="This many local days, today included (7d, 30d…).",
)
@click.option("--tag", multiple=True, help="Only feeds with this tag (repeatable).")
@click.option(
    "--recipient",
    help="Count in this recipient's time zone and followed tags (default: the first one's"
    " time zone, every feed).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
@click.pass_obj
@handle_errors
def stats_command(
    obj: Context, since: int, tag: tuple[str, ...], recipient: str | None, as_json: bool
) -> None:
    """Items per business function, per day and per feed, counted as the digest counts them.

    An item counts on the local day it was first seen (when not older than a week), under
    its effective labels: a person's correction, else the model's when it was confident;
    the others count as uncertain. An item with two labels counts under both.
    """
    recipients = {r.name: r for r in obj.settings.recipients}
    if recipient is not None and recipient not in recipients:
        known = ", ".join(recipients) or "none"
        raise click.BadParameter(f"no recipient named {recipient!r} (known: {known})")
    chosen = recipients[recipient] if recipient else next(iter(recipients.values()), None)
    timezone = chosen.timezone if chosen else "UTC"
    tags = tag or (chosen.tags if recipient and chosen else ())
    days = local_days(timezone, max(1, math.ceil(since / (24 * 60))), now_utc())
    per_day: dict[str, dict[str, int]] = {}
    per_feed: dict[int, dict[str, int]] = {}
    with obj.store() as store:
        check_feed_and_tags(store, None, tuple(tag))
        feeds = {row.id: row for row in store.list_feeds()}
        for day, start, end in days:
            total = per_day.setdefault(day.isoformat(), dict.fromkeys(_COLUMNS, 0))
            for feed_id, counts in store.feed_label_counts(start, end, tags).items():
                row = per_feed.setdefault(feed_id, dict.fromkeys(_COLUMNS, 0))
                for label, n in counts.items():
                    total[label] = total.get(label, 0) + n
                    row[label] = row.get(label, 0) + n
    if as_json:
        data: dict[str, Any] = {
            "timezone": timezone,
            "tags": list(tags),
            "days": per_day,
            "feeds": {feeds[feed_id].url: counts for feed_id, counts in per_feed.items()},
        }
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    header = [_HEADERS.get(label, label) for label in _COLUMNS]
    click.echo(
        f"items per function, first seen on each local day in {timezone}"
        + (f", feeds tagged {', '.join(tags)}" if tags else "")
    )
    shown = list(per_day.items())
    if len(shown) > LIST_EVERY_DAY_UP_TO:  # a long span: the days with items, then a count
        shown = [(day, counts) for day, counts in shown if counts[TOTAL]]
    click.echo(_table("day", header, shown) if shown else "(no items)")
    if len(shown) < len(per_day):
        skipped = len(per_day) - len(shown)
        click.echo(f"({skipped} day{'' if skipped == 1 else 's'} without items not shown)")
    total_row = {label: sum(c[label] for c in per_day.values()) for label in _COLUMNS}
    click.echo(_table("", header, [("total", total_row)], with_header=False))
    click.echo("\nper feed, most items first")
    ranked = sorted(per_feed.items(), key=lambda pair: (-pair[1][TOTAL], feeds[pair[0]].url))
    names = [(feeds[feed_id].title or feeds[feed_id].url, counts) for feed_id, counts in ranked]
    click.echo(_table("feed", header, names) if names else "(no items)")
    legend = ", ".join(f"{_SHORT[label]}={label}" for label in LABELS if label in _SHORT)
    click.echo(f"\n{legend}; an item with two labels counts under both")


def _table(
    first: str,
    header: list[str],
    rows: list[tuple[str, dict[str, int]]],
    *,
    with_header: bool = True,
) -> str:
    width = max([len(first), 10, *(len(name[:40]) for name, _ in rows)])
    sizes = [max(5, len(h)) for h in header]
    lines = (
        [f"{first:<{width}}  " + "  ".join(f"{h:>{n}}" for h, n in zip(header, sizes, strict=True))]
        if with_header
        else []
    )
    lines += [
        f"{name[:40]:<{width}}  "
        + "  ".join(f"{counts[label]:>{n}}" for label, n in zip(_COLUMNS, sizes, strict=True))
        for name, counts in rows
    ]
    return "\n".join(lines)
