"""The `tuneform` command: a thin click layer over the library.

Every command speaks text for people and JSON for scripts and agents, and exits 0 on success,
1 on failure (invalid, over budget, failed run or gate, not found), 2 on usage errors. Heavy
imports (rich, huggingface_hub, torch) happen inside the commands that need them, so `--help`
and `validate` stay fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _root() -> Path:
    from .trees import repo_root

    return repo_root(Path.cwd())


def _fail(message: str, fmt: str, code: int = EXIT_FAIL) -> NoReturn:
    """Report an error that is not a traceback: JSON for machines, one line for people."""
    if fmt == "json":
        click.echo(json.dumps({"ok": False, "error": message}))
    elif fmt == "github":
        click.echo(f"::error::{message}")
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tuneform")
def main() -> None:
    """Training-as-code for LLM fine-tuning.

    Each run is a YAML file in runs/. `plan` shows what a change will train and what it costs;
    `apply` trains, evaluates and publishes it.
    """


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True)
@click.option("--backend", type=click.Choice(["local", "hf-jobs"]), default=None, help="Check as if running on this backend.")
def validate(paths: tuple[str, ...], fmt: str, backend: str | None) -> None:
    """Check run files (default: runs/): schema, files, flavors, budgets, memory fit.

    Exit 0 when every file is valid, 1 when any is not.
    """
    from .report import render_validation
    from .resolve import HubResolver
    from .validate import validate as run_validate

    result = run_validate(_root(), list(paths), backend=backend, hub=HubResolver(offline=True))
    click.echo(render_validation(result, fmt), nl=False)
    sys.exit(EXIT_OK if result.ok else EXIT_FAIL)


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--base", default=None, help="Git revision to compare with (default: merge base with main).")
@click.option("--backend", type=click.Choice(["local", "hf-jobs"]), default=None, help="Override compute.backend.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--offline", is_flag=True, help="Do not ask the Hub to resolve revisions or read registries.")
def plan(paths: tuple[str, ...], base: str | None, backend: str | None, fmt: str, offline: bool) -> None:
    """Show what each changed run would do: action, flavor, time, cost, memory fit.

    Exit 0 when the plan can be applied, 1 when a run is invalid or over budget.
    """
    from .backends import registry_for
    from .plan import make_plan
    from .report import render_plan
    from .resolve import HubResolver
    from .trees import TreeError

    root = _root()
    try:
        result = make_plan(root, base=base, paths=list(paths), backend=backend,
                           registry_for=registry_for(root), hub=HubResolver(offline=True) if offline else None)
    except TreeError as exc:
        _fail(str(exc), fmt)
    click.echo(render_plan(result, fmt), nl=False)
    sys.exit(EXIT_OK if result.ok else EXIT_FAIL)


@main.command()
@click.option("--write", is_flag=True, help="Write it to schema/run.schema.json, where run files point editors.")
def schema(write: bool) -> None:
    """Print the JSON Schema of a run file (for editors and check-jsonschema)."""
    from .spec import SCHEMA_FILE, json_schema

    if write:
        target = _root() / SCHEMA_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {SCHEMA_FILE}")
    else:
        _emit_json(json_schema())


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--namespace", default=None, help="Hub namespace for output repos (default: none, set it later).")
def init(directory: str, namespace: str | None) -> None:
    """Scaffold a training repository: runs/, evals/, data/ and [tool.tuneform] settings."""
    from .scaffold import ScaffoldError, scaffold

    try:
        written = scaffold(Path(directory), namespace=namespace)
    except ScaffoldError as exc:
        _fail(str(exc), "text")
    for path in written:
        click.echo(f"created {path}")
    click.echo("next: tuneform validate && tuneform plan")


if __name__ == "__main__":
    main()
