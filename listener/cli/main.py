"""The command line's root: the global options, `check-config` and `init`, and every other
command, from its own module.

The command line is thin: it parses options, calls the jobs (or app, which assembles them)
and prints. Startup failures (config, database) become one clear message and exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from listener import __version__
from listener.cli.classify import (
    classify_command,
    label_command,
    model_group,
    reclassify_command,
    refine_command,
    review_command,
)
from listener.cli.feeds import feeds_group, poll_command
from listener.cli.items import export_command, search_command
from listener.cli.service import alerts_group, digest_command, run_command, status_command
from listener.cli.stats import stats_command
from listener.cli.support import Context, handle_errors, plural
from listener.cli.watch import watch_group
from listener.cli.web import web_command
from listener.config import redacted


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="listener")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="LISTENER_CONFIG",
    help="TOML settings file (default: the first of ./listener.toml,"
    " ~/.config/listener/listener.toml, /etc/listener/listener.toml, else the built-in"
    " defaults). Env: LISTENER_CONFIG.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="LISTENER_DB",
    help="SQLite database file (default: `database` in the settings). Env: LISTENER_DB.",
)
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), help="Log format.")
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Log level."
)
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    db_path: Path | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """listener: social listening for brand, PR, HR and customer-service teams.

    Polls RSS/Atom/JSON feeds politely, stores every item once in SQLite, and lets you
    search and export them.
    """
    from_env = ctx.get_parameter_source("config_path") == click.core.ParameterSource.ENVIRONMENT
    ctx.obj = Context(config_path, db_path, log_format, log_level, config_from_env=from_env)


@cli.command("check-config")
@click.pass_obj
@handle_errors
def check_config(obj: Context) -> None:
    """Validate the settings and print the effective values (secrets hidden), and which
    settings file they come from."""
    data = redacted(obj.settings)
    data["database"] = str(obj.database_path())
    data["config_file"] = obj.config_file.describe()
    click.echo(f"config: {obj.config_file.describe()}", err=True)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@cli.command("init")
@click.pass_obj
@handle_errors
def init(obj: Context) -> None:
    """Create the database (and import the default feeds) if it does not exist."""
    with obj.store() as store:
        counts = store.counts()
    click.echo(
        f"{store.path}: {plural(counts['feeds'], 'feed')}, {plural(counts['items'], 'item')}"
    )


cli.add_command(feeds_group)
cli.add_command(poll_command)
cli.add_command(search_command)
cli.add_command(export_command)
cli.add_command(stats_command)
cli.add_command(run_command)
cli.add_command(status_command)
cli.add_command(digest_command)
cli.add_command(watch_group)
cli.add_command(alerts_group)
cli.add_command(classify_command)
cli.add_command(model_group)
cli.add_command(label_command)
cli.add_command(review_command)
cli.add_command(reclassify_command)
cli.add_command(refine_command)
cli.add_command(web_command)


def main() -> None:
    cli(prog_name="listener")
