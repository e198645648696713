"""The one place where a `TuneformError` becomes what a user sees and the exit code.

Commands raise (or let through) `TuneformError`s; `TuneformCommand.invoke` catches them and
prints them in the command's `--format`: `error: <message>: <fix>` on stderr for people,
`{"ok": false, "error", "fix"}` on stdout for `--format json`, an `::error::` annotation for
`--format github`. The exit code is the error's own: 1 for a failure, 2 for a usage error (shown
as click shows its usage errors when the output is for people). Any other exception is a bug: it
is not caught here, so its traceback shows.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from tuneform.core.errors import TuneformError


class CommandError(TuneformError):
    """A failure the command layer itself finds: no job matches a reference, the Hub refused a
    job's status, logs or cancel."""


def fail(exc: TuneformError, fmt: str, ctx: click.Context | None = None) -> NoReturn:
    """Print `exc` for the output format `fmt` and exit with its code."""
    if fmt == "json":
        click.echo(json.dumps(exc.as_json()))
    elif fmt == "github":
        click.echo(f"::error::{exc}")
    elif exc.is_usage:
        raise click.UsageError(str(exc), ctx)
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class TuneformCommand(click.Command):
    """A click command whose TuneformErrors are reported by `fail` in the command's --format."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TuneformError as exc:
            fail(exc, str(ctx.params.get("fmt") or "text"), ctx)


class TuneformGroup(click.Group):
    """A click group whose commands (and sub-groups' commands) are TuneformCommands."""

    command_class = TuneformCommand
    group_class = type  # sub-groups are TuneformGroups too
