"""The `tuneform` command: a thin click layer over the library.

Every command speaks text for people and JSON for scripts and agents, and exits 0 on success,
1 on failure (invalid, over budget, failed run or gate, not found), 2 on usage errors. Commands
call the library, render its report and exit with the report's code; a `TuneformError` raised on
the way is printed and mapped to its exit code by cli/handler.py, once for all commands. Heavy
imports (rich, huggingface_hub, torch) happen inside the commands that need them, so `--help`
and `validate` stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from tuneform import __version__
from tuneform.backends import BACKENDS
from tuneform.cli.handler import CommandError, TuneformGroup
from tuneform.core.errors import EXIT_FAIL, EXIT_OK

if TYPE_CHECKING:
    from tuneform.core.manifest import Manifest
    from tuneform.estimate.catalog import FlavorTable


def _root() -> Path:
    from tuneform.runfile.trees import repo_root

    return repo_root(Path.cwd())


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(cls=TuneformGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tuneform")
def main() -> None:
    """Training-as-code for LLM fine-tuning.

    Each run is a YAML file in runs/. `plan` shows what a change will train and what it costs;
    `apply` trains, evaluates and publishes it.
    """


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True)
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=None, help="Check as if running on this backend.")
def validate(paths: tuple[str, ...], fmt: str, backend: str | None) -> None:
    """Check run files (default: runs/): schema, files, flavors, budgets, memory fit.

    Exit 0 when every file is valid, 1 when any is not.
    """
    from tuneform.plan.render import render_validation
    from tuneform.plan.validate import validate as run_validate
    from tuneform.runfile.resolve import HubResolver

    root = _root()
    result = run_validate(root, _run_paths(root, paths), backend=backend, hub=HubResolver(offline=True))
    click.echo(render_validation(result, fmt), nl=False)
    sys.exit(EXIT_OK if result.ok else EXIT_FAIL)


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--base", default=None, help="Git revision to compare with (default: merge base with main).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=None, help="Override compute.backend.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--offline", is_flag=True, help="Do not ask the Hub to resolve revisions or read registries.")
def plan(paths: tuple[str, ...], base: str | None, backend: str | None, fmt: str, offline: bool) -> None:
    """Show what each changed run would do: action, flavor, time, cost, memory fit.

    Exit 0 when the plan can be applied, 1 when a run is invalid or over budget.
    """
    from tuneform.plan.render import render_plan
    from tuneform.runfile.resolve import HubResolver

    root = _root()
    result = _plan(root, _run_paths(root, paths), base, backend, HubResolver(offline=True) if offline else None)
    click.echo(render_plan(result, fmt), nl=False)
    sys.exit(EXIT_OK if result.ok else EXIT_FAIL)


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--base", default=None, help="Git revision to compare with (default: merge base with main).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=None, help="Override compute.backend.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow each job until it ends.")
@click.option(
    "--wait-within",
    "wait_minutes",
    type=click.FloatRange(min=0),
    metavar="MINUTES",
    default=None,
    help="Follow only the jobs whose estimate (x1.5) fits in MINUTES in all; detach the others.",
)
@click.option(
    "--results-markdown",
    "results_markdown",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write each run's outcome as markdown to this file, with the report of each job followed to its end.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--approval-from-commit",
    "approval_commit",
    metavar="SHA",
    default=None,
    help="Read budget approval of the merged PR of this commit through the GitHub API (GITHUB_TOKEN, "
    "GITHUB_REPOSITORY): its approval label, added by someone with write access after its last plan, approves up to the plan comment's total.",
)
@click.option(
    "--plan-markdown",
    "plan_markdown",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the plan as markdown to this file (what the results comment shows).",
)
def apply(
    paths: tuple[str, ...],
    base: str | None,
    backend: str | None,
    wait: bool,
    wait_minutes: float | None,
    results_markdown: str | None,
    fmt: str,
    approval_commit: str | None,
    plan_markdown: str | None,
) -> None:
    """Execute the plan: train, evaluate and publish; restore without training.

    Prints the plan first, then each job's progress and report. Idempotent: a run whose key is
    already trained (or training) is not trained again. Exit 1 when a run fails or misses a gate.

    A plan over budget applies only with --approval-from-commit SHA, when the merged PR of SHA
    was approved: its budget label ([tool.tuneform] budget_label) added by someone with write
    access after its last plan, for at least what this plan costs (docs/github.md). No PR found
    or GitHub unreachable means no approval.
    """
    from tuneform.backends.apply import apply_plan
    from tuneform.plan.render import render_plan

    if wait_minutes is not None and not wait:
        raise click.UsageError("--wait-within follows the jobs that fit: it cannot go with --no-wait")
    root = _root()
    found: list[Any] = []  # the approval read from GitHub, once the plan names its label
    reader = _approval_reader(approval_commit, found) if approval_commit is not None else None
    # labels=[]: apply never takes a label from the event; approval is read from GitHub only
    result_plan = _plan(root, _run_paths(root, paths), base, backend, labels=[], approval=reader, applying=True)
    approval = found[0] if found else None
    say = (lambda line: click.echo(line, err=True)) if fmt == "json" else click.echo
    if plan_markdown is not None:
        Path(plan_markdown).write_text(render_plan(result_plan, "markdown"), encoding="utf-8")
    if fmt == "text":
        click.echo(render_plan(result_plan, "text"), nl=False)
    if not result_plan.ok:
        if approval is None:
            unapproved = "no --approval-from-commit was given"
        elif approval.usd is not None:
            unapproved = f"{approval.source}: approved ${approval.usd:.2f} {approval.by}"
        else:
            unapproved = approval.source
        raise result_plan.refusal(unapproved)
    # The merged PR found for the approval is the one the versions record (lineage).
    result = apply_plan(
        result_plan,
        root,
        _home(root),
        wait=wait,
        say=say,
        pr=approval.pr if approval else None,
        wait_within=None if wait_minutes is None else wait_minutes * 60,
    )
    if results_markdown is not None:
        from tuneform.github.results import render_apply_results

        Path(results_markdown).write_text(render_apply_results(result), encoding="utf-8")
    if fmt == "json":
        _emit_json(result.as_json())
    else:
        for outcome in result.outcomes:
            mark = {"done": "ok", "skipped": "--", "failed": "FAILED"}[outcome.status]
            click.echo(f"{mark:6} {outcome.action:8} {outcome.path}: {outcome.message}")
        if not result.outcomes:
            click.echo("Nothing to apply.")
    sys.exit(EXIT_OK if result.ok else EXIT_FAIL)


def _approval_reader(commit: str, found: list[Any]) -> Any:
    """What make_plan asks, with the label the base's settings name, for the approval of the
    merged PR of `commit`; the approval read is appended to `found` (for apply's messages)."""

    def approved(label: str) -> Any:
        from tuneform.github.approval import approval_from_commit
        from tuneform.plan.planner import BudgetApproval

        approval = approval_from_commit(commit, label)
        found.append(approval)
        return BudgetApproval(approval.usd, approval.by) if approval.usd is not None else None

    return approved


def _plan(
    root: Path,
    paths: list[str],
    base: str | None,
    backend: str | None,
    hub: Any = None,
    labels: list[str] | None = None,
    applying: bool = False,
    approval: Any = None,
) -> Any:
    from tuneform.backends import registry_for
    from tuneform.github.client import event_labels
    from tuneform.plan.planner import make_plan
    from tuneform.runfile.diagnostics import Problem

    flavors, note = _prices(root, backend)
    plan = make_plan(
        root,
        base=base,
        paths=paths,
        backend=backend,
        registry_for=registry_for(root),
        hub=hub,
        labels=event_labels() if labels is None else labels,
        approval=approval,
        flavors=flavors,
        applying=applying,
    )
    if note:
        plan.problems.append(Problem(note, severity="warning"))
    return plan


def _prices(root: Path, backend: str | None) -> tuple[FlavorTable, str | None]:
    """The flavor table to plan with, as the plan's backend prices it (HF Jobs: the Hub's current
    prices when reachable, else the offline table); and a message when it could not ask."""
    from tuneform.backends import backend as backend_named

    return backend_named(backend or _settings(root).default_backend).prices()


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--registry",
    "registry_home",
    required=True,
    help="Local registry folder to publish into, or hub:<repo> (the bundle's output repo on the Hub; HF_TOKEN).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to train with (DDP under accelerate launch). Default: one per visible GPU, 1 on CPU.",
)
def job(bundle: Path, registry_home: str, processes: int | None) -> None:
    """Run one job bundle: train, evaluate, publish (what every backend executes)."""
    from tuneform.job.pipeline import install_sigterm, run_job

    install_sigterm()
    try:
        code = run_job(bundle, registry_home, lambda line: click.echo(line), processes=processes)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing was published", err=True)
        sys.exit(130)
    sys.exit(code)


def _settings(root: Path) -> Any:
    """The repository's [tool.tuneform] settings; defaults when pyproject.toml is broken (validate
    and plan report that, with its fix)."""
    from tuneform.runfile.settings import settings_or_defaults
    from tuneform.runfile.trees import WorkTree

    return settings_or_defaults(WorkTree(root))


def _home(root: Path) -> Path:
    """The local registry folder: $TUNEFORM_HOME, [tool.tuneform] registry, or .tuneform."""
    from tuneform.registry.local import default_home

    return default_home(root, _settings(root).registry)


@main.command()
@click.argument("run")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=None, help="Whose registry (default: the run's backend).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def history(run: str, backend: str | None, fmt: str) -> None:
    """Versions of a run (a run file or name): key, git commit, PR, date, status, metrics."""
    from tuneform.runfile.spec import load_valid_run

    root = _root()
    loaded, spec = load_valid_run(*_run_file(root, run))
    repo, registry = _run_registry(root, spec, loaded.name, backend)
    main_key = registry.main(repo)
    versions = registry.versions(repo)
    rows = [_history_row(v, main_key) for v in versions]
    if fmt == "json":
        _emit_json({"schema_version": HISTORY_SCHEMA_VERSION, "repo": repo, "main": main_key, "versions": rows})
        return
    if not rows:
        click.echo(f"{repo}: no versions yet (tuneform apply {run} trains one)")
        return
    click.echo(f"{repo}")
    for r in rows:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in r["metrics"].items())
        click.echo(
            f"{'*' if r['main'] else ' '} {r['version']}  {r['created'] or '-':20}  {(r['commit'] or '-')[:12]:12}  "
            f"{'#' + str(r['pr']) if r['pr'] else '-':6} {r['status']:12} {metrics}"
        )
        click.echo(f"    {_lineage_text(r)}")
    click.echo("* = main")


# 2: rows gain `clean`, `model_revision`, `model_sha256` and `data` (lineage; README "history").
HISTORY_SCHEMA_VERSION = 2


def _history_row(version: Any, main_key: str | None) -> dict[str, Any]:
    """One version in `history --format json`: what it is, where it came from, how it scored."""
    manifest = version.manifest
    lineage = manifest.lineage
    return {
        "version": f"run-{version.key[:12]}",
        "run_key": version.key,
        "main": version.key == main_key,
        "status": version.status,
        "created": version.created,
        "commit": version.commit,
        "clean": manifest.git.clean,
        "run_file": manifest.git.run_file,
        "pr": version.pr,
        "model_revision": None if lineage and lineage.model_sha256 else manifest.model_revision,
        "model_sha256": lineage.model_sha256 if lineage else None,
        "data": [f.model_dump() for f in lineage.data] if lineage else None,
        "metrics": version.metrics,
    }


def _lineage_text(row: dict[str, Any]) -> str:
    """history's second line per version: clean or not, base model, data hashes (12 hex)."""
    clean = {True: "clean", False: f"dirty ({row['run_file'] or 'tracked files changed'})", None: "clean: unknown"}[row["clean"]]
    model = f"model sha256 {row['model_sha256'][:12]}" if row["model_sha256"] else f"model {str(row['model_revision'] or '-')[:12]}"
    data = " ".join(f"{d['path']} {d['sha256'][:12]}" for d in row["data"] or []) or "-"
    return f"{clean} · {model} · data {data}"


def _is_run_name(run: str) -> bool:
    """Whether a RUN argument is a run's name rather than a path: it has no run file's suffix and
    no file or folder by that name exists (relative to the working directory). OSError when the
    file system refuses the name (too long)."""
    from tuneform.plan.runcheck import RUN_SUFFIXES

    return Path(run).suffix not in RUN_SUFFIXES and not (Path.cwd() / run).exists()


def _named_run_file(root: Path, name: str) -> Path:
    """The run file of a run's name: runs/<name>.yaml, else runs/<name>.yml when only that exists."""
    from tuneform.plan.runcheck import RUN_SUFFIXES, RUNS_DIR

    named = [root / RUNS_DIR / f"{name}{suffix}" for suffix in RUN_SUFFIXES]
    return next((p for p in named if p.is_file()), named[0])


def _run_file(root: Path, run: str) -> tuple[Path, str]:
    """The run file that a command's RUN argument names, and how messages show it (relative to
    the repository when inside it): a path (`runs/demo.yaml`, relative to the working directory),
    or a run's name (`demo`, the file runs/demo.yaml). `history`, `preview` and `data check` resolve
    their RUN here, so they agree. A name or path that no run file has is a RunFileError with the
    closest run file (did-you-mean), or the run files there are."""
    from tuneform.plan.runcheck import RUN_SUFFIXES, RUNS_DIR
    from tuneform.runfile.diagnostics import did_you_mean
    from tuneform.runfile.spec import RunFileError
    from tuneform.runfile.trees import WorkTree, os_problem

    def shown(path: Path) -> str:
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    given = Path(os.path.normpath(Path.cwd() / run))
    try:
        by_name = _is_run_name(run)
        path = _named_run_file(root, run) if by_name else given
        # something there that is no file (a symlink loop): the command's reader says what is wrong
        found = path.is_file() or os.path.lexists(path)
    except OSError as exc:  # a name too long for the file system
        raise os_problem(run, exc) from None
    if found:
        return path, shown(path)
    run_files = WorkTree(root).list(RUNS_DIR, RUN_SUFFIXES)
    if by_name:
        wanted, known = run, [Path(p).relative_to(RUNS_DIR).with_suffix("").as_posix() for p in run_files]
    else:
        wanted, known = shown(given), run_files
    what = f"no run named '{run}' in {RUNS_DIR}/" if by_name else f"no run file {wanted}"
    if not known:
        raise RunFileError(what, fix=f"{RUNS_DIR}/ holds no run files yet: tuneform init writes an example")
    raise RunFileError(what + did_you_mean(wanted, known), fix=f"pass a run file or the name of one in {RUNS_DIR}/")


def _run_paths(root: Path, paths: tuple[str, ...]) -> list[str]:
    """validate, plan, apply and calibrate's PATHS, with each run's name replaced by its run file
    (`tuneform apply demo`, as history suggests). Anything else stays as typed, for those commands
    to report in their own output (a missing file is a problem in validate's JSON, not an error)."""

    def one(raw: str) -> str:
        try:
            named = _named_run_file(root, raw) if _is_run_name(raw) else None
            return (
                os.path.relpath(named) if named is not None and named.is_file() else raw
            )  # relative to the working directory, as typed paths are
        except OSError:
            return raw

    return [one(raw) for raw in paths]


def _run_registry(root: Path, spec: Any, name: str, backend: str | None) -> tuple[str, Any]:
    """A run's output repo and the registry of its backend, which holds its versions."""
    from tuneform.backends import backend as backend_named
    from tuneform.plan.runcheck import output_repo_of
    from tuneform.registry.local import RegistryError

    settings = _settings(root)
    repo = output_repo_of(spec, name, settings)
    registry = backend_named(backend or spec.compute.backend or settings.default_backend).registry(root)
    if registry is None:
        raise RegistryError(f"{repo} is on the Hub and the Hub client is offline (HF_HUB_OFFLINE)", fix="unset it to read the versions")
    return repo, registry


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=None, help="Whose registry (default: each run's backend).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def calibrate(paths: tuple[str, ...], backend: str | None, fmt: str) -> None:
    """Estimated against measured for every trained version of the runs (default: runs/), and the
    [tool.tuneform.calibration] table that corrects the estimator for this repository."""
    from tuneform.estimate.calibrate import calibrate_runs
    from tuneform.plan.runcheck import RUN_SUFFIXES, RUNS_DIR
    from tuneform.runfile.trees import WorkTree

    root = _root()

    def manifests_of(loaded: Any) -> list[Manifest]:
        repo, registry = _run_registry(root, loaded.spec, loaded.name, backend)
        return [v.manifest for v in registry.versions(repo)]

    report = calibrate_runs(root, _run_paths(root, paths) or WorkTree(root).list(RUNS_DIR, RUN_SUFFIXES), manifests_of)
    if fmt == "json":
        _emit_json(report.as_json())
    else:
        click.echo(report.text(), nl=False)


@main.command()
@click.argument("suite", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--predictions", required=True, type=click.Path(dir_okay=False, path_type=Path), help='JSONL of {"id", "prediction"}.')
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def score(suite: Path, predictions: Path, fmt: str) -> None:
    """Score predictions (any model's) against an eval suite. Exit 1 on missing rows or bad files."""
    from tuneform.evals.score import load_predictions, score_predictions
    from tuneform.evals.suite import load_suite

    loaded = load_suite(suite.resolve(), _root())
    report = score_predictions(loaded, load_predictions(predictions))
    if fmt == "json":
        _emit_json(report.to_json())
    else:
        for metric, value in report.metrics.items():
            click.echo(f"{metric:12} {value:.4f}")
        for message in [*report.errors, *report.warnings]:
            click.echo(message)
    sys.exit(EXIT_OK if report.ok else EXIT_FAIL)


@main.command()
@click.argument("run")
@click.option("-n", "count", default=3, show_default=True, help="How many samples.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def preview(run: str, count: int, fmt: str) -> None:
    """Show rendered training samples of a run (a run file or name) with the trained (unmasked) spans marked."""
    from tuneform.runfile.spec import load_valid_run
    from tuneform.train.format import preview as make_preview
    from tuneform.train.format import shared_prompt

    root = _root()
    _, spec = load_valid_run(*_run_file(root, run))
    samples = make_preview(spec, root, count)
    if fmt == "json":
        _emit_json([s.as_json() for s in samples])
        return
    from rich.console import Console

    from tuneform.core.markup import rich_text

    console = Console(highlight=False)
    style: Literal["rich", "brackets"] = "rich" if console.is_terminal else "brackets"  # ⟦ ⟧ survive pipes and logs
    markup = style == "rich"
    for i, sample in enumerate(samples):
        if sample.answer is None:
            console.rule(f"{rich_text(sample.source)} row {sample.row}: {sample.trained_tokens} of {sample.tokens} tokens trained")
            console.print(sample.marked(style), markup=markup)
        elif sample.answer == "chosen":  # a pair: its prompt once, then each answer after it
            pair = samples[i : i + 2]
            shared = shared_prompt(pair[0], pair[1])
            console.rule(f"{rich_text(sample.source)} row {sample.row}: preference pair")
            console.print(sample.marked(style, end=shared), markup=markup)
            for answer in pair:
                cut = " (truncated)" if answer.truncated else ""
                console.print(f"--- {answer.answer}: {answer.trained_tokens} of {answer.tokens} tokens trained{cut}", markup=False)
                console.print(answer.marked(style, shared), markup=markup)
    console.print(
        "[bold green]green[/] text is trained; the rest is context only"
        if style == "rich"
        else "text inside ⟦ ⟧ is trained; the rest is context only",
        markup=style == "rich",
    )


def _job(ref: str) -> tuple[Any, Any]:
    """The backend and job that `ref` names: the first backend of the table that knows it."""
    from tuneform.backends import backend

    root = _root()
    for name in BACKENDS:
        chosen = backend(name)
        found = chosen.find_job(root, ref)
        if found is not None:
            return chosen, found
    raise CommandError(f"no job matches '{ref}'", fix="pass a job id, a run name or a run key prefix (tuneform apply prints job ids)")


@main.command()
@click.argument("run_or_job")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(run_or_job: str, fmt: str) -> None:
    """Stage of the latest job of a run (or of a job id; HF Jobs: JOB_ID or NAMESPACE/JOB_ID)."""
    chosen, found = _job(run_or_job)
    state = chosen.status(_root(), found)
    if fmt == "json":
        _emit_json(state)
    else:
        click.echo(
            f"{state['id']}: {state['stage']}"
            + (f" ({state['message']})" if state.get("message") else "")
            + (f" {state['url']}" if state.get("url") else "")
        )


@main.command()
@click.argument("run_or_job")
@click.option("--tail", "lines", type=int, default=None, help="Only the last N lines.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def logs(run_or_job: str, lines: int | None, fmt: str) -> None:
    """Print the log of the latest job of a run (or of a job id; HF Jobs: JOB_ID or NAMESPACE/JOB_ID)."""
    chosen, found = _job(run_or_job)
    got = chosen.logs(_root(), found, lines)
    if fmt == "json":
        _emit_json({"id": found.id, "lines": got})
        return
    for line in got:
        click.echo(line)


@main.command()
@click.argument("run_or_job")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def cancel(run_or_job: str, fmt: str) -> None:
    """Stop the latest job of a run (or a job id; HF Jobs: JOB_ID or NAMESPACE/JOB_ID); nothing is published."""
    chosen, found = _job(run_or_job)
    canceled, stage = chosen.cancel(_root(), found)
    if fmt == "json":
        _emit_json({"id": found.id, "canceled": canceled, "stage": stage})
    elif canceled:
        click.echo(f"canceled {found.id}")
    else:
        click.echo(f"{found.id} had already ended ({stage})")


@main.command()
@click.option("--pr", type=int, default=None, help="Pull request number.")
@click.option("--commit", default=None, help="A merge commit: the comment goes on the PR it came from.")
@click.option("--key", required=True, help="Which sticky comment (e.g. plan, results): one per key per PR.")
@click.option("--details-url", default=None, help="Where the full report lives (linked when the body is trimmed).")
@click.option("--expect-head", metavar="SHA", default=None, help="Comment only when the PR's head commit is SHA (exit 1 otherwise).")
@click.option(
    "--approval-usd",
    type=float,
    default=None,
    help="With --key plan, --pr and --expect-head: stamp the comment with this plan total and head for budget approval.",
)
@click.option("--approval-label", default="budget-approved", show_default=True, help="The label that approves spending.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("file", type=click.File("r", encoding="utf-8"))
def comment(
    pr: int | None,
    commit: str | None,
    key: str,
    details_url: str | None,
    expect_head: str | None,
    approval_usd: float | None,
    approval_label: str,
    fmt: str,
    file: Any,
) -> None:
    """Create or update the one tuneform comment for KEY on a PR (GITHUB_TOKEN, GITHUB_REPOSITORY).

    Exit 0 when the comment was created or updated; 1 when GitHub failed or the PR's head is not
    --expect-head; 2 on usage errors; 3 when --commit SHA belongs to no pull request (a direct
    push), after waiting up to 90 s for GitHub to link the commit to its PR.
    """
    from tuneform.github.client import comment_command

    if (pr is None) == (commit is None):
        raise click.UsageError("pass exactly one of --pr N or --commit SHA")
    if approval_usd is not None:
        from tuneform.github.approval import PLAN_KEY, plan_comment_command

        if key != PLAN_KEY or pr is None or expect_head is None:
            raise click.UsageError("--approval-usd needs --key plan, --pr N and --expect-head SHA")
        check = plan_comment_command(pr, expect_head, file.read(), usd=approval_usd, label=approval_label, details_url=details_url)
        if fmt == "json":
            _emit_json({"ok": True, "approved": check.ok, "approval": check.message})
        else:
            click.echo(f"updated the plan comment of #{pr}; budget approval: {check.message}")
        return
    result = comment_command(pr, commit, key, file.read(), details_url=details_url, expect_head=expect_head)
    if fmt == "json":
        _emit_json({"ok": True, "id": result.id, "url": result.url, "created": result.created})
    else:
        click.echo(f"{'created' if result.created else 'updated'} {result.url}")


@main.command()
@click.option("--commit", required=True, help="The merge commit (full SHA) whose jobs to report on.")
@click.option("--post", is_flag=True, help="Also update the PR's sticky results comment (GITHUB_TOKEN, GITHUB_REPOSITORY).")
def results(commit: str, post: bool) -> None:
    """Each job COMMIT submitted to HF Jobs, its stage, and the finished runs' reports (markdown).

    Exit 0 when every run finished, 75 when some are still queued or running (ask again later),
    1 when some failed (the body says which) or on errors (no body), 2 on usage errors.
    """
    from tuneform.github.results import commit_results

    report = commit_results(commit, post=post)
    click.echo(report.body, nl=False)
    sys.exit(report.exit_code)


@main.command()
@click.argument("plan_json", type=click.Path(dir_okay=False, path_type=Path))
def reuse(plan_json: Path) -> None:
    """Look the run keys of PLAN_JSON up in registries the plan could not read (HF_TOKEN: read-only).

    Prints a markdown section for the plan comment (nothing when nothing was found); exit 1 when
    PLAN_JSON is unreadable.
    """
    from tuneform.github.reuse import render_reuse_markdown, reuse_for_plan

    click.echo(render_reuse_markdown(reuse_for_plan(plan_json)), nl=False)


@main.group()
def data() -> None:
    """Training data: quality checks before anything trains."""


@data.command("check")
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
def data_check(run: str, fmt: str) -> None:
    """Rows, tokens, lengths, duplicates, broken rows, leakage into evals of a run (a run file or
    name); exit 1 on a failing rule."""
    from tuneform.data.check import data_check_run, render_data_markdown, render_data_text

    root = _root()
    report = data_check_run(root, str(_run_file(root, run)[0]))
    if fmt == "json":
        _emit_json(report.as_json())
    else:
        click.echo(render_data_markdown(report) if fmt == "markdown" else render_data_text(report), nl=False)
    sys.exit(report.exit_code)


@main.command()
@click.option("--write", is_flag=True, help="Write it to schema/run.schema.json, where run files point editors.")
def schema(write: bool) -> None:
    """Print the JSON Schema of a run file (for editors and check-jsonschema)."""
    from tuneform.runfile.spec import SCHEMA_FILE, json_schema

    if write:
        target = _root() / SCHEMA_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {SCHEMA_FILE}")
    else:
        _emit_json(json_schema())


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option(
    "--namespace",
    default=None,
    help="Hub user or org that output repos default to (default: asked in a terminal, else the user of HF_TOKEN).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def init(directory: str, namespace: str | None, fmt: str) -> None:
    """Scaffold a training repository: runs/, evals/, data/, [tool.tuneform] settings and the
    GitHub workflows, which install this same tuneform (the install spec it prints).

    The namespace is what hf-jobs (the backend of the GitHub workflows) publishes to: --namespace,
    else asked when run in a terminal (suggesting the Hugging Face token's user), else that user. With none
    of these, init says what to add to pyproject.toml.
    """
    from tuneform.core.distribution import SOURCES, install_spec
    from tuneform.runfile.scaffold import scaffold

    target = Path(directory)
    # A person at a terminal on both ends: a script or test that reads the output never waits on a question.
    interactive = fmt == "text" and sys.stdin.isatty() and sys.stdout.isatty()
    namespace, source = _init_namespace(target, namespace, interactive=interactive)
    spec = install_spec()
    written = scaffold(target, namespace=namespace if source in _WRITTEN_BY_INIT else None, install=spec)
    install = {"requirement": spec.requirement, "sha256": spec.sha256 or None, "source": spec.source, "warning": spec.warning}
    note = _namespace_note(namespace, source)
    if fmt == "json":
        _emit_json({"ok": True, "created": written, "install": install, "namespace": namespace, "namespace_from": source, "note": note})
        return
    for path in written:
        click.echo(f"created {path}")
    hashed = f" (sha256 {spec.sha256})" if spec.sha256 else ""
    if spec.warning:
        click.echo(f"warning: {spec.warning}", err=True)
    else:
        click.echo(f"the workflows install {spec.requirement}{hashed}, the tuneform running now ({SOURCES[spec.source]})")
    click.echo(note)
    click.echo("next: tuneform validate && tuneform plan")


# Where init's namespace came from: the ones init writes into the settings it creates.
_WRITTEN_BY_INIT = ("--namespace", "prompt", "hub token")


def _init_namespace(target: Path, given: str | None, *, interactive: bool) -> tuple[str | None, str | None]:
    """The namespace `tuneform init` settles on and where it came from: settings already in
    target's pyproject.toml (init never edits them), --namespace, the answer in a terminal (the
    token's user suggested), the token's user; (None, None) when nothing says."""
    from tuneform.core.errors import UsageError
    from tuneform.core.hub import token_user
    from tuneform.runfile.scaffold import check_namespace
    from tuneform.runfile.settings import PYPROJECT

    pyproject = target / PYPROJECT
    if pyproject.is_file() and "[tool.tuneform]" in pyproject.read_text(encoding="utf-8", errors="replace"):
        existing = _settings(target).namespace
        return (existing, PYPROJECT) if existing else (given, None)
    if given is not None:
        return check_namespace(given), "--namespace"
    user = token_user()
    if interactive:

        def answer(text: str) -> str:
            try:
                return check_namespace(text.strip()) if text.strip() else ""
            except UsageError as exc:  # click's own kind, so that the prompt asks again
                raise click.BadParameter(str(exc)) from None

        asked = click.prompt(
            "Hub user or organization for output repos" + (f" [{user}]" if user else " (Enter: set it later)"),
            default=user or "",
            show_default=False,
            value_proc=answer,
        )
        return (asked, "prompt") if asked else (None, None)
    return (user, "hub token") if user else (None, None)


def _namespace_note(namespace: str | None, source: str | None) -> str:
    """What init says about the namespace: which one and from where, or exactly what to add."""
    from tuneform.runfile.settings import PYPROJECT

    if namespace is None or source is None:
        return (
            f'no Hub namespace set: add namespace = "{namespace or "<your Hub user or org>"}" to [tool.tuneform] in {PYPROJECT}. '
            "The GitHub workflows plan and apply on hf-jobs, which publishes to that namespace: until it is set, their plan check fails."
        )
    where = {
        "--namespace": "from --namespace",
        "prompt": "as answered",
        "hub token": "the user of your Hugging Face token; pass --namespace to choose another, e.g. an org",
        PYPROJECT: f"already in {PYPROJECT}",
    }[source]
    return f"namespace {namespace} ({where}): output repos default to {namespace}/<run name>"


if __name__ == "__main__":
    main()
