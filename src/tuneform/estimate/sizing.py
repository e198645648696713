"""From a run file to a priced workload: tokens counted, flavor chosen, memory checked.

This is the glue between the run file (spec), the repository (its data files and local model)
and the estimator (pure arithmetic over shapes and flavors). What cannot be known offline is
said in a finding rather than guessed silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from tuneform.data.reader import NO_TRAINING_ROWS, BadRow, DataError, Example, check_bad_rows
from tuneform.data.tokens import (
    Counter,
    TokenCount,
    count_source,
    local_tokenizer,
    token_counter,
)
from tuneform.estimate import catalog
from tuneform.estimate.catalog import FLAVORS, FlavorTable, ModelShape
from tuneform.estimate.estimator import (
    DEFAULT_CALIBRATION,
    Calibration,
    Estimate,
    NoFlavorFits,
    Workload,
    choose_flavor,
    estimate,
    forced_flavor_error,
)
from tuneform.evals.suite import SuiteError, read_suite_once
from tuneform.runfile import jsonsafe
from tuneform.runfile.diagnostics import did_you_mean
from tuneform.runfile.jsonsafe import JsonError
from tuneform.runfile.resolve import HubResolver, local_model_dir
from tuneform.runfile.settings import Settings
from tuneform.runfile.spec import PREFERENCE_METHODS, HubSource, LocalSource, RunSpec
from tuneform.runfile.trees import Tree, TreeError

Where = tuple[str | int, ...]
# The job scores the base model, the version the run replaces (when the output repository's main
# holds another one) and the new model: each reads the held-out rows and answers every suite row
# (job/pipeline.py). A first version has no previous one, so its estimate counts one model's
# scoring too many: the estimate errs towards dearer, never towards a budget overrun.
EVAL_MODELS = 3
# Suite rows generated together (job/evaluate.py score_model's batch_size): a batch decodes one
# token of each of its rows per step, up to the suite's max_new_tokens.
EVAL_BATCH_ROWS = 16
# A Hub dataset that cannot be inspected offline, sized by its max_samples: half-full rows.
UNKNOWN_ROW_FILL = 0.5


@dataclass
class Sizing:
    """The estimate for a run (None when it cannot be made) and what stood in the way."""

    estimate: Estimate | None = None
    token_method: str | None = None
    data_tokens: int | None = None
    rows: int | None = None  # training rows: a preference pair is one
    sequences: int | None = None  # what the rows train as: a preference pair is two
    truncated_rows: int = 0
    # The longest training row, when every row was counted (not a Hub dataset or parquet file).
    longest_row: int | None = None
    findings: list[tuple[Where, str, str]] = field(default_factory=list)  # (where, message, severity)
    budget_problems: list[tuple[Where, str]] = field(default_factory=list)
    # The same caps checked against a scoring-only `evaluate` job's cost.
    evaluate_budget_problems: list[tuple[Where, str]] = field(default_factory=list)
    # Why the run has no price, with the fix, when it has none: its cost is unknown, never $0.
    unpriced: tuple[Where, str] | None = None

    def cannot_price(self, where: Where, message: str) -> None:
        """Record why the run cannot be priced: a warning here, an unknown cost in the plan."""
        self.findings.append((where, message, "warning"))
        self.unpriced = (where, message)

    @property
    def fits(self) -> bool | None:
        return None if self.estimate is None else self.estimate.fits

    @property
    def mean_row(self) -> int | None:
        """Mean training sequence in tokens, when every row was counted: the real work of an
        unpacked row (its padding goes to ``longest_row``); a pair's two sequences count apart."""
        if self.longest_row is None or not self.sequences or self.data_tokens is None:
            return None
        return max(1, round(self.data_tokens / self.sequences))


def default_flavors(settings: Settings, flavors: FlavorTable = FLAVORS) -> list[str]:
    """Flavors a run may use: the repository's allowlist, else every GPU flavor."""
    if settings.allowed_flavors is not None:
        return [name for name in settings.allowed_flavors if name in flavors]
    return [name for name, flavor in flavors.items() if not flavor.is_cpu]


def _shape(spec: RunSpec, tree: Tree, sizing: Sizing, hub: HubResolver, backend: str) -> ModelShape | None:
    """The base model's shape: its config.json (in the repository, in a folder, or on the Hub
    when the Hub answers), else tuneform's catalog. A Hub id that is neither is an error with the
    catalog's closest id, except on the local backend, which pays nothing and downloads the
    model itself."""
    if spec.model.is_local and not spec.model.id.startswith("/"):
        try:
            config = jsonsafe.loads(jsonsafe.decode_text(tree.read(f"{local_model_dir(spec.model.id)}/config.json")))
            return catalog.shape_from_config(config)
        except (TreeError, JsonError, ValueError, KeyError, TypeError) as exc:
            sizing.cannot_price(("model", "id"), f"cannot read the model's shape from its config.json ({exc}): no estimate")
            return None
    if spec.model.is_local:
        try:
            return catalog.model_shape(spec.model.id, Path("/"))
        except ValueError as exc:
            sizing.cannot_price(("model", "id"), f"{exc}: no estimate")
            return None
    answer = hub.model(spec.model.id, spec.model.revision)
    if answer.config is not None:
        try:
            shape = catalog.shape_from_config(answer.config)
            return shape if answer.params is None else replace(shape, params=answer.params)
        except (ValueError, KeyError, TypeError) as exc:
            sizing.cannot_price(
                ("model", "id"), f"cannot read {spec.model.id}'s shape from its config.json on the Hub ({exc}): no estimate"
            )
            return None
    known = catalog.known_model(spec.model.id)
    if known is not None:
        return known
    if answer.exists:  # on the Hub, but its config cannot be read
        sizing.cannot_price(
            ("model", "id"),
            f"cannot size {spec.model.id}: {answer.reason}, and it is not in tuneform's catalog of model shapes (fix that, or use a local copy whose config.json can be read)",
        )
        return None
    where = "is not on the Hub" if answer.exists is False else f"could not be looked up on the Hub ({answer.reason})"
    message = (
        f"model {spec.model.id} {where} and is not in tuneform's catalog of model shapes{did_you_mean(spec.model.id, catalog.KNOWN_MODEL_IDS)}"
        " (check the spelling, plan where the Hub answers, or use a local copy whose config.json can be read)"
    )
    sizing.findings.append((("model", "id"), message, "warning" if backend == "local" else "error"))
    return None


# Token counts by content: (data sha256, tokenizer, source settings, seed, max_seq_length).
# Content-addressed, so valid for the whole process; plans of many runs share one data file.
# A file the job rejects is remembered as its DataError message.
_COUNTS: dict[tuple[str, str, str, int, int], TokenCount | str] = {}


def _count_local(tree: Tree, src: LocalSource, tokenizer_id: str, counter: Counter, spec: RunSpec) -> TokenCount:
    """One local file counted as the job reads it; raises the job's DataError when it would reject it."""
    seed = spec.training.seed if src.max_samples is not None else 0  # the seed only picks max_samples' rows
    key = (tree.sha256(src.path), tokenizer_id, src.model_dump_json(exclude={"path"}), seed, spec.model.max_seq_length)
    if key not in _COUNTS:
        try:
            _COUNTS[key] = count_source(tree.read(src.path), src, counter, spec.model.max_seq_length, seed)
        except DataError as exc:
            _COUNTS[key] = str(exc)
    count = _COUNTS[key]
    if isinstance(count, str):
        raise DataError(count)
    return count


def _count_data(spec: RunSpec, tree: Tree, sizing: Sizing) -> int | None:
    """Trainable tokens in one epoch of the train sources (before the eval split).

    The local sources, train and eval, are read as the job reads them (data/tokens.py): a file
    the job would reject, too many malformed rows, or no usable row is an error here with the
    job's own message, and no estimate.
    """
    tokenizer_id, counter = token_counter(local_tokenizer(spec, tree))
    methods = set()
    total, rows, sequences, filled = 0, 0, 0, 0
    longest: int | None = 0  # None once a source's rows are not counted one by one
    bad: list[BadRow] = []
    rows_read = 0
    all_local = True
    sources = [("train", i, src) for i, src in enumerate(spec.data.train)] + [("eval", i, src) for i, src in enumerate(spec.data.eval)]
    for part, i, src in sources:
        if isinstance(src, HubSource):
            all_local = False
            if part == "eval":
                continue
            if src.max_samples is None:
                sizing.cannot_price(
                    ("data", "train", i),
                    f"dataset {src.dataset} cannot be sized offline: set max_samples (or training.max_steps) so the plan can price the run",
                )
                return None
            methods.add("max_samples")
            per_row = 2 if src.format == "preference" else 1
            total += int(src.max_samples * per_row * spec.model.max_seq_length * UNKNOWN_ROW_FILL)
            rows += src.max_samples
            sequences += src.max_samples * per_row
            longest = None
            continue
        try:
            count = _count_local(tree, src, tokenizer_id, counter, spec)
        except TreeError:
            return None  # reported by the resolver already
        except DataError as exc:
            sizing.findings.append((("data", part, i, "path"), str(exc), "error"))
            return None
        bad.extend(count.bad)
        rows_read += count.rows_read
        if part == "eval":
            continue
        methods.add(count.method)
        total += count.tokens
        rows += count.rows
        filled += count.prompt_filled
        sequences += count.rows * (2 if src.format == "preference" else 1)
        sizing.truncated_rows += count.truncated_rows
        longest = None if longest is None or count.longest is None else max(longest, count.longest)
    if all_local:  # with a Hub source, the job's share of malformed rows is not known offline
        try:
            check_bad_rows(bad, rows_read, spec.data.max_bad_rows)
            if not rows:
                raise DataError(NO_TRAINING_ROWS)
        except DataError as exc:
            sizing.findings.append((("data", "train") if not rows else ("data",), str(exc), "error"))
            return None
    sizing.token_method = " + ".join(sorted(methods))
    sizing.rows = rows
    sizing.sequences = sequences
    sizing.longest_row = longest or None
    if filled:
        sizing.findings.append(
            (
                ("model", "max_seq_length"),
                f"{filled} preference pairs have a prompt of max_seq_length {spec.model.max_seq_length} tokens or more: the trainer drops them "
                "(no answer token would be left); shorten their prompts or raise max_seq_length",
                "warning",
            )
        )
    if sizing.truncated_rows:
        sizing.findings.append(
            (
                ("model", "max_seq_length"),
                f"{sizing.truncated_rows} of {rows} training rows are longer than max_seq_length {spec.model.max_seq_length} and will be truncated",
                "warning",
            )
        )
    return total


def _workload(
    spec: RunSpec, shape: ModelShape, train_tokens: int, per_epoch: int, evals: EvalWork, engine: str, sizing: Sizing
) -> Workload:
    """The estimator's view of the run. The counted rows' mean and longest lengths size an
    unpacked run's work and padding; without them it is sized at max_seq_length (safe side).
    Preference pairs are never packed (TRL's preference trainers pad each batch), and a
    precomputed reference reads one epoch of the data (`per_epoch` tokens)."""
    method = spec.method
    training = spec.training
    modules = (
        method.target_modules if isinstance(method.target_modules, str) or method.target_modules is None else tuple(method.target_modules)
    )
    return Workload(
        shape=shape,
        train_tokens=max(1, train_tokens),
        seq_len=spec.model.max_seq_length,
        method=method.type,
        lora_r=method.r or 16,
        target_modules=modules or "all-linear",
        batch_size=None if training.per_device_train_batch_size == "auto" else int(training.per_device_train_batch_size),
        grad_accum=training.gradient_accumulation_steps,
        gradient_checkpointing=None if training.gradient_checkpointing == "auto" else bool(training.gradient_checkpointing),
        packing=training.packing and method.type not in PREFERENCE_METHODS,
        engine=engine,  # type: ignore[arg-type]
        eval_tokens=evals.forward_tokens,
        eval_decode_tokens=evals.decode_tokens,
        eval_decode_steps=evals.decode_steps,
        mean_example_tokens=sizing.mean_row,
        max_example_tokens=sizing.longest_row,
        exports=spec.output.exports,
        compile=spec.compute.compile,
        precompute_reference=bool(method.precompute_ref_log_probs),
        reference_data_tokens=per_epoch,
    )


@dataclass(frozen=True)
class EvalWork:
    """What scoring reads and writes, over every model the job scores: forward-only tokens
    (held-out rows and suite prompts), generated tokens, and the decode steps they take."""

    forward_tokens: int
    decode_tokens: int
    decode_steps: int


def _eval_work(spec: RunSpec, tree: Tree, data_tokens: int) -> EvalWork:
    """Scoring's work: every suite row's prompt (counted like a training conversation, through
    the one token counter) and its max_new_tokens answer, plus the held-out split, per model.

    Each answer is priced at its full max_new_tokens: a greedy batch stops early only when every
    row in it has ended, which the plan cannot know.
    """
    _, counter = token_counter(local_tokenizer(spec, tree))
    prompts = decode = steps = 0
    for ref in spec.evals:
        try:
            suite = read_suite_once(tree, ref.suite)
        except (TreeError, SuiteError):
            continue  # reported by the run check, which then sizes nothing
        examples = [
            Example(ref.suite, row.line, messages=row.messages or [{"role": "user", "content": row.prompt or ""}]) for row in suite.rows
        ]
        prompts += sum(counter.lengths(examples))
        new_tokens = suite.spec.generation.max_new_tokens
        decode += len(suite.rows) * new_tokens
        steps += -(-len(suite.rows) // EVAL_BATCH_ROWS) * new_tokens
    heldout = int(data_tokens * (spec.data.eval_split or 0.0))
    return EvalWork(EVAL_MODELS * (heldout + prompts), EVAL_MODELS * decode, EVAL_MODELS * steps)


def size_run(
    spec: RunSpec, tree: Tree, settings: Settings, backend: str, flavors: FlavorTable = FLAVORS, hub: HubResolver | None = None
) -> Sizing:
    """Estimate a run for its backend: the local machine, or the right HF Jobs flavor.

    `flavors` prices it: the offline table, or the Hub's current one (catalog.hub_flavor_table).
    `hub` reads a Hub model's config.json when the catalog is not enough (default: as the client
    is configured, offline under HF_HUB_OFFLINE)."""
    sizing = Sizing()
    data_tokens = _count_data(spec, tree, sizing)  # first: a file the job rejects is an error even when nothing is priced
    modules = spec.method.target_modules
    unknown = [m for m in modules if not catalog.known_lora_module(m)] if isinstance(modules, list) else []
    if unknown:
        sizing.cannot_price(
            ("method", "target_modules"),
            f"LoRA target module {', '.join(repr(m) for m in unknown)} is not one the estimator knows ({', '.join(catalog.LORA_MODULE_NAMES)}): cost and memory are not estimated",
        )
        return sizing
    shape = _shape(spec, tree, sizing, hub or HubResolver(), backend)
    if shape is None or data_tokens is None:
        return sizing
    sizing.data_tokens = data_tokens
    epochs = spec.training.num_train_epochs or 1.0
    per_epoch = int(data_tokens * (1 - (spec.data.eval_split or 0.0)))
    train_tokens = int(per_epoch * epochs)
    engine = "unsloth" if spec.compute.engine in ("auto", "unsloth") else "trl"
    workload = _workload(spec, shape, train_tokens, per_epoch, _eval_work(spec, tree, data_tokens), engine, sizing)

    calibration = replace(
        DEFAULT_CALIBRATION, speed_by_gpu=dict(settings.calibration.speed), memory_by_gpu=dict(settings.calibration.memory)
    )
    result = _price(spec, workload, settings, backend, sizing, calibration, flavors)
    if result is not None and spec.training.max_steps is not None:
        # max_steps fixes the optimizer steps: tokens follow from the batch the estimate chose
        # (real tokens: padding is not trained)
        rows_per_step = result.batch_size * spec.training.gradient_accumulation_steps * max(1, result.flavor.gpus)
        steps_tokens = spec.training.max_steps * rows_per_step * workload.sequences_per_row * workload.real_row_tokens
        result = estimate(replace(workload, train_tokens=max(1, steps_tokens), batch_size=result.batch_size), result.flavor, calibration)
    sizing.estimate = result
    if result is not None:
        _check_budget(spec, settings, result, sizing)
    return sizing


def _price(
    spec: RunSpec, workload: Workload, settings: Settings, backend: str, sizing: Sizing, calibration: Calibration, flavors: FlavorTable
) -> Estimate | None:
    flavor_name = spec.compute.flavor
    if backend == "local":
        if flavor_name != "auto":
            sizing.findings.append(
                (("compute", "flavor"), f"flavor {flavor_name} is ignored by the local backend (it trains on this machine)", "warning")
            )
        result = estimate(workload, flavors["local"], calibration)
        if spec.method.type == "qlora" and result.flavor.is_cpu:
            sizing.findings.append(
                (
                    ("method", "type"),
                    "qlora needs a CUDA GPU (4-bit kernels) and the local backend estimates this machine's CPU: use lora or full locally, or backend hf-jobs",
                    "error",
                )
            )
        elif not result.fits:
            sizing.findings.append(
                (
                    ("model", "id"),
                    f"this machine has {result.memory_gb:.0f} GiB but the run needs about {result.peak_vram_gb:.1f} GiB: shorten max_seq_length, use lora, or backend hf-jobs",
                    "error",
                )
            )
        return result
    allowed = default_flavors(settings, flavors)
    if flavor_name == "auto":
        try:
            return choose_flavor(workload, allowed, flavors, calibration=calibration)
        except NoFlavorFits as exc:
            sizing.findings.append((("compute", "flavor"), str(exc), "error"))
            return None
    if flavor_name not in flavors:
        return None  # reported by the flavor check
    problem = forced_flavor_error(workload, flavor_name, allowed, flavors, calibration=calibration)
    if problem:
        sizing.findings.append((("compute", "flavor"), problem, "error"))
    return estimate(workload, flavors[flavor_name], calibration)


def usd_text(usd: float) -> str:
    """Dollars for messages: cents, or more digits for sub-cent caps ($0.001)."""
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.2g}"


def _check_budget(spec: RunSpec, settings: Settings, result: Estimate, sizing: Sizing) -> None:
    """The run's caps against both jobs it may become: training (create, update) and scoring
    alone (evaluate, when only its evals changed); the plan keeps the list of its action."""
    caps: list[tuple[Where, str, float | None]] = [
        (("budget", "max_usd"), "budget.max_usd", spec.budget.max_usd),
        ((), "[tool.tuneform] max_usd_per_run", settings.max_usd_per_run),
    ]
    jobs = (
        (result.usd, "", sizing.budget_problems, "shorten the run (max_steps, max_samples), pick a cheaper flavor, or raise the cap"),
        (
            result.evaluate_usd,
            " to score the version again (evaluate)",
            sizing.evaluate_budget_problems,
            "score fewer suite rows or fewer max_new_tokens, pick a cheaper flavor, or raise the cap",
        ),
    )
    for usd, what, problems, fix in jobs:
        for where, label, cap in caps:
            if cap is not None and usd > cap:
                problems.append((where, f"estimated {usd_text(usd)}{what} is over {label} ({usd_text(cap)}): {fix}"))


# The job's time limit when compute.timeout is auto: the estimate times this margin plus a fixed
# allowance for the container's start (image pull, wheel install, model download), which the
# estimate does not count. Never HF Jobs' 30-minute default, which kills most real trainings.
TIMEOUT_MARGIN = 1.5
TIMEOUT_STARTUP_S = 600
TIMEOUT_FLOOR_S = 60  # HF Jobs refuses less; a cap this small ends the job at once anyway


@dataclass(frozen=True)
class JobTimeout:
    """The time limit a job gets, and which cap (if any) shortened it.

    `capped_by` names the cap (e.g. "budget.max_usd ($2.00)"); `configured_over` is True when a
    compute.timeout written in the run file asked for more than that cap allows.
    """

    seconds: int
    capped_by: str | None = None
    configured_over: bool = False

    @property
    def text(self) -> str:
        """`1h 05m`, `45m`: what the plan shows."""
        hours, minutes = divmod(round(self.seconds / 60), 60)
        return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def job_timeout(
    estimate_seconds: float | None, usd_per_hour: float | None, configured: int | str | None, caps: list[tuple[str, float | None]]
) -> JobTimeout:
    """The job's time limit: compute.timeout when set, else estimate x TIMEOUT_MARGIN +
    TIMEOUT_STARTUP_S; then never longer than the smallest cap in `caps` (label, USD) buys at
    `usd_per_hour`, so a job that runs over its estimate stops at what the budget allows instead
    of billing on (HF Jobs bills until the time limit)."""
    configured_seconds = configured if isinstance(configured, int) else None
    seconds = configured_seconds or int((estimate_seconds or 1800) * TIMEOUT_MARGIN + TIMEOUT_STARTUP_S)
    usable = [(label, usd) for label, usd in caps if usd is not None]
    if not usable or not usd_per_hour:
        return JobTimeout(max(TIMEOUT_FLOOR_S, seconds))
    label, usd = min(usable, key=lambda cap: cap[1])
    allowed = int(usd / usd_per_hour * 3600)
    if seconds <= allowed:
        return JobTimeout(max(TIMEOUT_FLOOR_S, seconds))
    return JobTimeout(max(TIMEOUT_FLOOR_S, allowed), f"{label} ({usd_text(usd)})", configured_seconds is not None)
