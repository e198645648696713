"""Everything tuneform can know about one run file in one state of the repository.

`check_run` is shared by validate (one state) and plan (base and working tree): schema, the
semantic checks that need the repository (files exist and stay inside it, flavors, models,
settings), the run key, the eval suites' hash and the cost estimate. It never raises for bad
input: every finding becomes a located Problem.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tuneform.estimate import catalog
from tuneform.estimate.sizing import Sizing, size_run
from tuneform.evals.metrics import run_metrics
from tuneform.evals.suite import SuiteError, read_suite_once
from tuneform.runfile.diagnostics import Problem, did_you_mean
from tuneform.runfile.resolve import HubResolver, resolve_run, with_fix
from tuneform.runfile.settings import DEFAULT_IMAGE, TRACKER_SECRET_EXAMPLES, Settings
from tuneform.runfile.spec import (
    PREFERENCE_METHODS,
    REMOTE_TRACKERS,
    LoadedRun,
    Resolved,
    RunSpec,
    canonical_json,
    dotted,
    load_run_text,
    run_key,
)
from tuneform.runfile.trees import Tree, TreeError
from tuneform.train.preference import untrained as untrained_preference

RUNS_DIR = "runs"
RUN_SUFFIXES = (".yaml", ".yml")
# A run with no suite has no gate to miss, so its job publishes every version as passed: the plan
# says so before anyone merges it.
NO_EVALS_WARNING = (
    "no evals: this run will publish as passed with no gate checking the model; add a suite, e.g. "
    'evals: [{suite: evals/example.yaml, gate: {exact_match: ">= 0.5"}}] (tuneform init writes an example suite)'
)


@dataclass
class RunCheck:
    """One run file checked in one tree."""

    path: str
    name: str
    file_sha256: str | None = None  # the file's bytes: a reformatted file is "changed" but keeps its key
    spec: RunSpec | None = None
    key: str | None = None
    eval_hash: str | None = None
    backend: str = "local"
    output_repo: str | None = None
    sizing: Sizing | None = None
    problems: list[Problem] = field(default_factory=list)
    budget_problems: list[Problem] = field(default_factory=list)  # kept apart: a PR label may approve them
    evaluate_budget_problems: list[Problem] = field(default_factory=list)  # the same caps, for a scoring-only job
    unpriced: Problem | None = None  # why its cost is unknown (no estimate on a paid backend)
    image: str | None = None  # the container an hf-jobs job runs in (None: the local backend runs none)
    # Outside [tool.tuneform] allowed_images / allowed_namespaces: the plan blocks the run (no label lifts it)
    trust_problems: list[Problem] = field(default_factory=list)
    loaded: LoadedRun | None = None
    resolved: Resolved | None = None  # the revisions and hashes the key was made of (lineage)

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def as_json(self) -> dict[str, Any]:
        """validate's entry for this file: over-budget counts as an error here."""
        return {
            "path": self.path,
            "ok": self.ok and not self.budget_problems and not self.trust_problems,
            "errors": [p.as_json() for p in self.errors + self.budget_problems + self.trust_problems],
            "warnings": [p.as_json() for p in self.warnings],
        }


def backend_of(spec: RunSpec, settings: Settings, override: str | None = None) -> str:
    """--backend, else compute.backend, else [tool.tuneform] default_backend (itself default local)."""
    return override or spec.compute.backend or settings.default_backend


def image_of(spec: RunSpec) -> str:
    """The container an hf-jobs job runs in: compute.image, else TUNEFORM_HF_IMAGE (an operator's
    override on the machine that applies), else the pinned default. Plan and apply both ask here,
    so the override meets the same allowlist as a run file's image."""
    return spec.compute.image or os.environ.get("TUNEFORM_HF_IMAGE") or DEFAULT_IMAGE


def output_repo_of(spec: RunSpec, name: str, settings: Settings) -> str:
    if spec.output.repo:
        return spec.output.repo
    return f"{settings.namespace or 'local'}/{name}"


def check_run(
    tree: Tree,
    path: str,
    settings: Settings,
    hub: HubResolver,
    *,
    backend: str | None = None,
    text: bytes | None = None,
    flavors: catalog.FlavorTable = catalog.FLAVORS,
) -> RunCheck:
    """Load, validate, key and size one run file, priced with `flavors`. Never raises for bad input."""
    if text is None:
        try:
            text = tree.read(path)
        except TreeError as exc:
            return RunCheck(path, path, problems=[Problem(str(exc))])
    loaded = load_run_text(text, path)
    result = RunCheck(path, loaded.name, hashlib.sha256(text).hexdigest(), problems=list(loaded.problems), loaded=loaded)
    if loaded.spec is None:
        return result
    spec = result.spec = loaded.spec

    def at(where: tuple[str | int, ...], message: str, severity: str = "error") -> None:
        line, column = loaded.locate(*where)
        result.problems.append(Problem(message, line, column, dotted(where), severity))  # type: ignore[arg-type]

    result.backend = backend_of(spec, settings, backend)
    result.output_repo = output_repo_of(spec, result.name, settings)
    if result.backend == "hf-jobs" and not spec.output.repo and not settings.namespace:
        at(("output",), "backend hf-jobs publishes to the Hub: set output.repo (namespace/name) or [tool.tuneform] namespace")
    if spec.model.trust_remote_code and spec.model.id not in settings.trust_remote_code:
        at(
            ("model", "trust_remote_code"),
            f"{spec.model.id} may not run remote code here: list it in [tool.tuneform] trust_remote_code, or set trust_remote_code: false",
        )
    if spec.model.id.startswith("/") and result.backend != "local":
        at(
            ("model", "id"),
            "an absolute model path exists only on this machine: use the local backend, a folder in the repository or a Hub id",
        )
    if reason := untrained_preference(spec):
        at(("method", "type"), reason)
    _check_flavor(spec, settings, flavors, at)
    if result.backend == "hf-jobs":
        _check_tracker(spec, settings, at)
        result.image = image_of(spec)
        for field_path, message in _untrusted(spec, result.image, result.output_repo, settings):
            line, column = loaded.locate(*field_path)
            result.trust_problems.append(Problem(message, line, column, dotted(field_path)))

    resolution = resolve_run(spec, tree, hub)
    for where, message in resolution.errors:
        at(where, message)
    for where, message in resolution.warnings:
        at(where, message, "warning")
    result.eval_hash = _check_evals(spec, tree, at)
    if resolution.resolved is not None:
        result.resolved = resolution.resolved
        result.key = run_key(spec, resolution.resolved)
    if not result.errors:
        result.sizing = size_run(spec, tree, settings, result.backend, flavors, hub)
        for where, message, severity in result.sizing.findings:
            at(where, message, severity)

        def located(where: tuple[str | int, ...], message: str) -> Problem:
            line, column = loaded.locate(*where)  # a repository cap (no key of its own) points at 1:1, like other whole-file errors
            return Problem(message, line, column, dotted(where))

        result.budget_problems = [located(where, message) for where, message in result.sizing.budget_problems]
        result.evaluate_budget_problems = [located(where, message) for where, message in result.sizing.evaluate_budget_problems]
        if result.sizing.estimate is None and result.backend != "local":  # the local backend trains here, at $0
            where, why = result.sizing.unpriced or (("model", "id"), "the run could not be sized")
            result.unpriced = located(
                where,
                f"cost unknown: {why}. A cost that cannot be estimated is never taken as $0, so no cap can pass it: make the run priceable",
            )
    return result


def _check_flavor(spec: RunSpec, settings: Settings, flavors: catalog.FlavorTable, at: Any) -> None:
    flavor = spec.compute.flavor
    if flavor == "auto":
        return
    if flavor not in flavors or flavors[flavor].name == "local":
        at(("compute", "flavor"), f"unknown flavor '{flavor}'{did_you_mean(flavor, flavors)}")
    elif settings.allowed_flavors is not None and flavor not in settings.allowed_flavors:
        at(
            ("compute", "flavor"),
            f"flavor '{flavor}' is not allowed in this repository (allowed: {', '.join(settings.allowed_flavors)}): pick one of those or ask an owner to extend [tool.tuneform] allowed_flavors",
        )


def _check_tracker(spec: RunSpec, settings: Settings, at: Any) -> None:
    """A remote tracker on HF Jobs needs its credentials as job secrets, which only the
    repository's settings name (a run file never holds secrets): without them the job would
    train and log nowhere, or fail after the GPU was paid for."""
    tracker = spec.training.report_to
    if tracker in REMOTE_TRACKERS and not settings.secrets_of(tracker):
        names = ", ".join(f'"{name}"' for name in TRACKER_SECRET_EXAMPLES[tracker])
        at(
            ("training", "report_to"),
            f"report_to {tracker} on hf-jobs needs its credentials as job secrets: add [tool.tuneform.tracker_secrets] {tracker} = [{names}] "
            "to pyproject.toml (the names of environment variables apply reads), or set report_to: tensorboard or none",
        )


def _untrusted(spec: RunSpec, image: str, output_repo: str, settings: Settings) -> list[tuple[tuple[str, ...], str]]:
    """Where an hf-jobs run leaves the repository's trust boundary. Its job gets HF_TOKEN (write)
    inside `image` and moves `main` of `output_repo`, so both must be ones the base branch's
    [tool.tuneform] allows; a pull request's own pyproject.toml cannot widen them."""
    found: list[tuple[tuple[str, ...], str]] = []
    fix = "on the base branch (a pull request cannot allow its own)"
    if image not in settings.allowed_images:
        where = ("compute", "image") if spec.compute.image else ("compute",)
        source = "compute.image" if spec.compute.image else ("TUNEFORM_HF_IMAGE" if image != DEFAULT_IMAGE else "the default image")
        found.append(
            (
                where,
                f"image '{image}' ({source}) is not allowed in this repository (allowed: {', '.join(settings.allowed_images) or 'none'}): "
                f"use one of those, or have an owner add it to [tool.tuneform] allowed_images {fix}",
            )
        )
    namespace = output_repo.split("/", 1)[0]
    allowed = settings.publish_namespaces
    has_repo = spec.output.repo or settings.namespace  # neither: check_run's own error asks for one
    if has_repo and namespace not in allowed:
        where = ("output", "repo") if spec.output.repo else ("output",)
        if allowed:
            message = (
                f"output repo '{output_repo}' is in namespace '{namespace}', where this repository may not publish (allowed: {', '.join(allowed)}): "
                f"publish under one of those, or have an owner add '{namespace}' to [tool.tuneform] allowed_namespaces {fix}"
            )
        else:
            message = (
                f"output repo '{output_repo}': this repository allows no Hub namespace to publish to: "
                f"have an owner set [tool.tuneform] namespace (or allowed_namespaces) {fix}"
            )
        found.append((where, message))
    return found


def check_shared_outputs(checks: Iterable[RunCheck]) -> None:
    """Two runs that publish to one output repository would each move its `main` to their own
    version on every apply: an error on each of them, naming the others."""
    by_repo: dict[tuple[str, str], list[RunCheck]] = {}
    for check in checks:
        if check.spec is not None and check.output_repo:
            # Hub repo ids are case-insensitive: acme/Bot and acme/bot are one repository
            by_repo.setdefault((check.backend, check.output_repo.casefold()), []).append(check)
    for group in by_repo.values():
        if len(group) < 2:
            continue
        for check in group:
            assert check.spec is not None and check.loaded is not None
            others = ", ".join(other.path for other in group if other is not check)
            where = ("output", "repo") if check.spec.output.repo else ("output",)
            line, column = check.loaded.locate(*where)
            check.problems.append(
                Problem(
                    f"{check.path} and {others} both publish to {check.output_repo}, so each apply would replace the other's main: "
                    "give each run its own output.repo",
                    line,
                    column,
                    "output.repo",
                )
            )


def _check_evals(spec: RunSpec, tree: Tree, at: Any) -> str | None:
    """Load each suite (and its data) from the tree; the hash covers suites and gates."""
    parts: list[Any] = []
    for i, ref in enumerate(spec.evals):
        try:
            tree.read(ref.suite)  # read_suite would report a missing suite without the fix
            suite = read_suite_once(tree, ref.suite)
        except TreeError as exc:
            at(("evals", i, "suite"), with_fix(exc, "add the suite or fix the path (relative to the repository root)"))
            continue
        except SuiteError as exc:
            where = f"{exc.path}" + (f":{exc.line}" if exc.line else "")
            at(("evals", i, "suite"), f"eval suite {where}: {exc.message}")
            continue
        known = set(suite.spec.metrics) | set(run_metrics(spec.method.type in PREFERENCE_METHODS))
        for metric in ref.gate:
            if metric not in known:
                at(
                    ("evals", i, "gate", metric),
                    f"gate on '{metric}', which suite {ref.suite} does not compute{did_you_mean(metric, known)}",
                )
        parts.append({"suite": suite.hash, "gate": ref.gate})
    if not spec.evals:
        at(("evals",), NO_EVALS_WARNING, "warning")
        return None
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()
