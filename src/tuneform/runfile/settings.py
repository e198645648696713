"""Repository settings: the `[tool.tuneform]` table of the training repo's pyproject.toml.

These are the guardrails a repository owner sets once (budgets, allowed flavors, which models may
run remote code). They are read from the base branch's copy when planning a pull request, so a
PR cannot raise its own budget.
"""

from __future__ import annotations

import re
import sys
import tomllib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuneform.core.errors import TuneformError
from tuneform.runfile.diagnostics import Problem, did_you_mean
from tuneform.runfile.spec import DataPolicy, RemoteTracker
from tuneform.runfile.trees import Tree, TreeError

PYPROJECT = "pyproject.toml"
DEFAULT_CHECKPOINT_MINUTES = 15.0
# A factor outside this range says the estimate is wrong in a way one number should not paper over.
# A calibration factor further than 4x from the estimator means a broken measurement, not a slow GPU.
FACTOR_MIN, FACTOR_MAX = 0.25, 4.0
Factor = Annotated[float, Field(ge=FACTOR_MIN, le=FACTOR_MAX)]
# An environment variable's name, as a job secret is named.
SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# What each remote tracker reads, suggested when a run asks for a tracker the settings do not name.
TRACKER_SECRET_EXAMPLES: dict[str, list[str]] = {
    "wandb": ["WANDB_API_KEY"],
    "mlflow": ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"],
    "trackio": ["TRACKIO_SPACE_ID"],
}
# The container an hf-jobs job runs in unless compute.image says otherwise: Unsloth's own image
# (PyTorch + CUDA, Unsloth, unsloth-zoo, TRL, PEFT, bitsandbytes, huggingface_hub), so a job
# installs only tuneform's small wheel. `core-<version>` is Unsloth's release tag without the
# Studio web UI (the one for scripts), at the Unsloth version tuneform's GPU work ran
# (scripts/fetch_gpu_wheels.sh pins unsloth==2026.10.9); `latest` and `core` are rebuilt daily.
# A tag can still be re-pushed: to pin by digest, read it with
# `docker buildx imagetools inspect unsloth/unsloth:core-2026.10.9` and use
# `unsloth/unsloth:core-2026.10.9@sha256:<digest>` in compute.image and in allowed_images.
DEFAULT_IMAGE = "unsloth/unsloth:core-2026.10.9"


class RepositoryCalibration(BaseModel):
    """`[tool.tuneform.calibration]`: measured over estimated, per GPU model, from this
    repository's finished runs. `tuneform calibrate` prints the table to paste."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speed: dict[str, Factor] = Field(
        default_factory=dict, description="Training speed, measured over estimated, per GPU model (H200, L4, ..., cpu), e.g. {H200 = 1.04}."
    )
    memory: dict[str, Factor] = Field(
        default_factory=dict, description="Peak GPU memory (torch's allocations), measured over estimated, per GPU model."
    )


class Settings(BaseModel):
    """`[tool.tuneform]`: defaults and limits for every run in the repository."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str | None = Field(None, description="Hub namespace for output repos that runs do not name.")
    default_backend: Literal["local", "hf-jobs"] = Field("local", description="Backend when neither --backend nor compute.backend says.")
    allowed_flavors: list[str] | None = Field(None, description="Flavors runs may use (default: every GPU flavor).")
    max_usd_per_run: float | None = Field(None, gt=0, description="Cap on one run's estimated cost.")
    max_usd_per_pr: float | None = Field(None, gt=0, description="Cap on the estimated cost of all runs in one plan.")
    max_usd_per_month: float | None = Field(
        None,
        gt=0,
        description="Cap on a calendar month's (UTC) spending of the repository's runs: billed cost of finished jobs, estimate of running ones, plus the plan.",
    )
    trust_remote_code: list[str] = Field(default_factory=list, description="Model ids allowed to set trust_remote_code.")
    allowed_images: list[str] = Field(
        default_factory=lambda: [DEFAULT_IMAGE],
        description="Container images hf-jobs runs may use, exactly as written (compute.image, else TUNEFORM_HF_IMAGE, else the pinned default); default: the pinned default alone.",
    )
    allowed_namespaces: list[str] | None = Field(
        None,
        description="Hub namespaces hf-jobs runs may publish to (output.repo's owner); default: [namespace], and none when namespace is unset.",
    )
    budget_label: str = Field("budget-approved", description="PR label that approves a plan over budget.")
    registry: str | None = Field(None, description="Folder of the local registry (default .tuneform; env TUNEFORM_HOME wins).")
    checkpoint_minutes: float = Field(
        DEFAULT_CHECKPOINT_MINUTES,
        ge=0,
        description="Minutes between training checkpoints an hf-jobs job uploads to its work branch, so a retried job resumes (0: none).",
    )
    data_policy: DataPolicy = Field(
        default_factory=DataPolicy,
        description='Data-check thresholds for every run: rule = {max, level}, e.g. duplicates = {max = 0.05, level = "fail"}.',
    )
    tracker_secrets: dict[RemoteTracker, list[str]] = Field(
        default_factory=dict,
        description='Environment variables an hf-jobs job gets as secrets, per tracker a run may report to, e.g. wandb = ["WANDB_API_KEY"]; apply reads their values from its own environment.',
    )
    calibration: RepositoryCalibration = Field(
        default_factory=RepositoryCalibration,
        description="Estimator corrections measured on this repository's runs: speed/memory = {GPU model = factor} (see `tuneform calibrate`).",
    )

    @field_validator("tracker_secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        """Names of environment variables; not HF_TOKEN (every job gets it: apply sends it), nor the CI
        runner's own variables (GITHUB_TOKEN...), which must never leave the runner."""
        for tracker, names in value.items():
            for name in names:
                if not SECRET_NAME.match(name):
                    raise ValueError(
                        f"{tracker}: {name!r} is not an environment variable name: use capitals, digits and _, e.g. WANDB_API_KEY"
                    )
                if name.startswith(("GITHUB_", "ACTIONS_", "RUNNER_")):
                    raise ValueError(f"{tracker}: {name} is the CI runner's own variable: a job never gets it")
            if "HF_TOKEN" in names:
                raise ValueError(f"{tracker} lists HF_TOKEN, which every job gets already: remove it")
        return value

    def secrets_of(self, tracker: str) -> list[str]:
        """The environment variables [tool.tuneform.tracker_secrets] names for `tracker` (report_to)."""
        return next((names for name, names in self.tracker_secrets.items() if name == tracker), [])

    @property
    def publish_namespaces(self) -> list[str]:
        """The namespaces hf-jobs runs may publish to: allowed_namespaces, else the repository's
        own namespace; with neither, none (the job's token reaches no repository nobody chose)."""
        if self.allowed_namespaces is not None:
            return self.allowed_namespaces
        return [self.namespace] if self.namespace else []


class SettingsError(TuneformError):
    """pyproject.toml's [tool.tuneform] table is broken; `problem` says where and what to change."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def parse_settings(text: str | bytes | None) -> Settings:
    """Settings from pyproject.toml text (None or no table: defaults). Raises SettingsError."""
    if text is None:
        return Settings()
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(
            Problem(f"{PYPROJECT} is not valid TOML: {exc}", getattr(exc, "lineno", None), getattr(exc, "colno", None))
        ) from None
    except RecursionError:
        raise SettingsError(Problem(f"{PYPROJECT} nests arrays or tables deeper than Python can read: flatten them")) from None
    except ValueError:  # the int-string conversion limit: tomllib's only other ValueError
        limit = sys.get_int_max_str_digits()
        raise SettingsError(Problem(f"{PYPROJECT} holds a number longer than {limit:,} digits: write it in quotes, as a string")) from None
    table = _table(_table(document, "tool", "tool"), "tuneform", "tool.tuneform")
    try:
        return Settings.model_validate(table)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            last = str(first["loc"][-1])
            message = f"[tool.tuneform] unknown key '{key}'{did_you_mean(last, _fields_at(first['loc'][:-1]))}"
        else:
            message = f"[tool.tuneform] {key}: {first['msg'].removeprefix('Value error, ')}"
        raise SettingsError(Problem(message, field=f"tool.tuneform.{key}")) from None


_TOML_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}


def _table(parent: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    """`parent[key]`, named `name` in messages: a table, or an empty one when missing. Anything
    else (`tool = 1`) is a SettingsError, since the settings cannot be looked up in it."""
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise SettingsError(
            Problem(
                f"{name} in {PYPROJECT} is {_TOML_KINDS.get(type(value), 'a value')}, not a table: write it as a [{name}] section",
                field=name,
            )
        )
    return value


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Keys allowed at `loc` inside [tool.tuneform] (data_policy.duplicates...), for did-you-mean."""
    model: Any = Settings
    for part in loc:
        field = getattr(model, "model_fields", {}).get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        model = next(
            (a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if model is None:
            return []
    return list(model.model_fields)


def load_settings(tree: Tree) -> Settings:
    """Settings of a repository snapshot (a missing pyproject.toml means defaults)."""
    try:
        text = tree.read(PYPROJECT)
    except TreeError:
        text = None
    return parse_settings(text)


def settings_or_defaults(tree: Tree) -> Settings:
    """Settings for commands that only need defaults to go on (registry folder, namespace): a broken
    pyproject.toml falls back to defaults here, while validate and plan report it with its fix."""
    try:
        return load_settings(tree)
    except SettingsError:
        return Settings()
