"""The command line (`listener`): the root group in `main`, the commands by subject in
`feeds`, `items`, `service`, `watch` and `classify`, and what they share in `support`."""

from listener.cli.main import cli, main

__all__ = ["cli", "main"]
