"""The job: one bundle in, one published version out. Every backend runs exactly this.

Read top to bottom, a job: loads and checks the data, scores the base model and the version it
replaces, trains, scores the new model, checks the gates, and publishes. Publishing is the last
step and is atomic (the registry renames a finished folder into place), so a failure or Ctrl-C
anywhere before it leaves no half-published version. A version that fails its gates is kept,
marked `failed_gates`, and `main` does not move; `main` also never moves when another apply moved
it since this one was planned (a late job must not roll main back).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

from tuneform import __version__
from tuneform.core.errors import TuneformError
from tuneform.core.manifest import (
    FAILED_GATES,
    PASSED,
    Cost,
    DataCounts,
    Evals,
    EvalTable,
    ExportRecord,
    FileHash,
    Gate,
    Lineage,
    Manifest,
    ParentVersion,
    PlannedEstimate,
    Tracking,
    Training,
)
from tuneform.estimate.estimator import CompileMode
from tuneform.evals.suite import Suite, read_suite
from tuneform.job.bundle import Bundle, BundleError, read_bundle
from tuneform.job.registries import JobRegistry, LocalJobRegistry
from tuneform.runfile.resolve import hash_folder, hash_local_dir, local_model_dir
from tuneform.runfile.spec import PREFERENCE_METHODS, LocalSource, RunSpec
from tuneform.runfile.trees import WorkTree

if TYPE_CHECKING:
    from tuneform.data.reader import Example
    from tuneform.job.checkpoints import WorkBranch

Echo = Callable[[str], None]


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def progress_printer(echo: Echo) -> Callable[[int, int, float | None, int, float], None]:
    """A training callback that prints one line per log step: step, loss, tokens/s, ETA."""

    every = 1

    def on_log(step: int, total: int, loss: float | None, tokens: int, elapsed: float) -> None:
        nonlocal every
        every = max(1, total // 20)  # about twenty lines per run, whatever its length
        if step % every and step not in (1, total):
            return
        rate = tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / step * (total - step) if step else 0.0
        shown = "-" if loss is None else f"{loss:.4f}"
        echo(f"  step {step}/{total} | loss {shown} | {rate:,.0f} tok/s | ETA {_eta(eta)}")

    return on_log


def heldout_data(
    spec: RunSpec, examples: list[Example], tokenizer: Any
) -> tuple[list[tuple[list[int], list[int]]], list[tuple[list[int], list[int], list[int]]]]:
    """The held-out examples every model is scored on: (ids, trained mask) for the held-out loss,
    and for a preference run also the pairs (prompt, chosen, rejected ids) its reward metrics
    come from. A preference run's held-out loss is that of its chosen answers."""
    from tuneform.data.reader import pair_sequences
    from tuneform.train.format import tokenize_all, tokenize_pair

    if spec.method.type not in PREFERENCE_METHODS:
        rows = tokenize_all(examples, tokenizer, train_on=spec.training.train_on, max_seq_length=spec.model.max_seq_length)
        return [(t.input_ids, t.completion_mask) for t in rows], []
    length = spec.model.max_seq_length
    chosen = tokenize_all([dict(pair_sequences(e))["chosen"] for e in examples], tokenizer, train_on="responses", max_seq_length=length)
    pairs = [pair for pair in (tokenize_pair(e, tokenizer, max_seq_length=length) for e in examples) if pair.trainable]
    return [(t.input_ids, t.completion_mask) for t in chosen], [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in pairs]


def _suites(bundle: Bundle) -> list[Suite]:
    tree = WorkTree(bundle.files)
    return [read_suite(tree, ref.suite) for ref in bundle.spec.evals]


def _gates(bundle: Bundle) -> dict[str, str]:
    """Gates of every eval entry; with several suites, named `<suite>/<metric>` (see compare)."""
    spec = bundle.spec
    gates: dict[str, str] = {}
    suites = _suites(bundle)
    for ref, suite in zip(spec.evals, suites):
        for metric, condition in ref.gate.items():
            gates[f"{suite.name}/{metric}" if len(suites) > 1 else metric] = condition
    return gates


def _score(
    path: str,
    base: str | None,
    *,
    revision: str | None,
    chat_template: str | None,
    suites: list[Suite],
    heldout: list[tuple[list[int], list[int]]],
    pairs: list[tuple[list[int], list[int], list[int]]],
    four_bit: bool,
) -> Any:
    """Load one model (a folder, or an adapter on `base`) and score it; frees it afterwards.

    Every model is prompted with the run's chat template (the one training used) and loaded the
    same way (`four_bit` for a QLoRA run: its adapter trained against the 4-bit base, and a card
    sized for QLoRA training may not hold the 16-bit base), so base, previous and new differ only
    in their weights.
    """
    import gc

    from tuneform.job.evaluate import load_for_eval, score_model

    model, tokenizer = load_for_eval(path, base=base, revision=revision, four_bit=four_bit)
    try:
        return score_model(model, tokenizer, suites, heldout, chat_template=chat_template, pairs=pairs)
    finally:
        del model
        gc.collect()


HUB_REGISTRY = "hub"


def open_registry(where: Path | str, bundle: Bundle, echo: Echo) -> JobRegistry:
    """`hub` or `hub:<repo>`: the Hub model repo of output.repo (HF_TOKEN, HF_ENDPOINT); else a local folder."""
    text = str(where)
    if text == HUB_REGISTRY or text.startswith(HUB_REGISTRY + ":"):
        from tuneform.core.hub import hub_api
        from tuneform.job.hubjob import HubJobRegistry
        from tuneform.registry.hub import HubRegistry

        named = text.partition(":")[2]
        if named and named != bundle.run.output_repo:
            raise BundleError(f"--registry {text} does not match the bundle's output repo {bundle.run.output_repo}")
        return HubJobRegistry(HubRegistry(hub_api(), say=echo), private=bundle.spec.output.private)
    return LocalJobRegistry(Path(where))


def run_job(bundle_path: Path, registry_home: Path | str, echo: Echo, processes: int | None = None) -> int:
    """Train, evaluate and publish one bundle; returns the exit code (0 ok, 1 failed or gates).

    `registry_home` is a local registry folder, or `hub` / `hub:<repo>` to publish to the Hub.
    `processes` train together under DDP; None means one per visible GPU."""
    from tuneform.train.engine import TrainError  # imports no ML library yet

    job_started = time.time()

    bundle = read_bundle(bundle_path)
    try:
        if bundle.run.action != "evaluate":
            from tuneform.train.export import check_exports

            check_exports(bundle.spec)  # before any data, model or GPU time: README "Exports"
        import_engine_first(bundle)
    except TuneformError as exc:
        echo(f"error: {exc}")
        return 1
    from tuneform.data.reader import DataError, load_data
    from tuneform.evals.suite import GateError, SuiteError
    from tuneform.job.evaluate import compare
    from tuneform.train.export import ExportError
    from tuneform.train.format import FormatError, load_tokenizer

    quiet_libraries()
    spec, key, repo = bundle.spec, bundle.key, bundle.run.output_repo
    registry = open_registry(registry_home, bundle, echo)
    action = bundle.run.action
    parent_work = tempfile.TemporaryDirectory(prefix="tuneform-parent-")
    try:
        model_path, parent = starting_model(bundle, registry, Path(parent_work.name), echo)
    except BundleError as exc:
        echo(f"error: {exc}")
        return 1
    echo(f"tuneform job: {action} {bundle.run.name} run-{key[:12]} -> {repo}")
    echo(f"  tuneform {__version__} from {Path(__file__).resolve().parent}")

    if action != "evaluate" and registry.get(repo, key) is not None:
        echo(f"run-{key[:12]} is already published: nothing to train (the registry is the source of truth)")
        return 0
    staging = registry.staging(repo, key)
    try:
        echo("loading data")
        data = load_data(spec, bundle.files)
        for bad in data.bad_rows[:5]:
            echo(f"  dropped {bad}")
        echo(f"  {len(data.train)} train and {len(data.eval)} eval examples ({len(data.bad_rows)} bad rows dropped)")
        suites = _suites(bundle)
        tokenizer = load_tokenizer(model_path, spec.model)
        heldout, pairs = heldout_data(spec, data.eval, tokenizer)

        echo("scoring the base model")
        score = functools.partial(
            _score,
            revision=None if spec.model.is_local or parent else spec.model.revision,
            chat_template=tokenizer.chat_template,
            suites=suites,
            heldout=heldout,
            pairs=pairs,
            four_bit=spec.method.type == "qlora",
        )
        base_scores = score(model_path, None)
        previous_key = registry.main(repo)
        previous_scores = None
        if previous_key and previous_key != key:
            echo(f"scoring the version it replaces, run-{previous_key[:12]}")
            previous_scores = score(str(registry.model_dir(repo, previous_key)), model_path)

        result, resumed = None, None
        if action == "evaluate":
            version_dir = registry.model_dir(repo, key)
            echo(f"scoring run-{key[:12]} with the changed evals (no training)")
            new_scores = score(str(version_dir), model_path)
        else:
            result, resumed = _train(bundle, model_path, registry, data, staging, echo, processes)
            loss = f"final loss {result.loss_history[-1][1]:.4f}" if result.loss_history else f"mean loss {result.train_loss:.4f}"
            echo(f"  {result.steps} steps in {result.seconds:.1f}s, {result.tokens_per_second:,.0f} tok/s, {loss}")
            echo("scoring the new model")
            adapter = spec.output.root == "adapter"
            new_scores = score(str(staging / "model"), model_path if adapter else None)
        table = compare(base_scores, previous_scores, new_scores, _gates(bundle), beta=spec.method.beta)
    except (DataError, FormatError, TrainError, ExportError, GateError, SuiteError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        echo(f"error: {exc}")
        return 1
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        parent_work.cleanup()

    manifest = _manifest(bundle, data, result, table, base_scores, previous_key if previous_scores else None, resumed, staging, parent)
    if action != "evaluate":
        from tuneform.train.export import export_sizes

        sizes = export_sizes(spec.output, staging / "model")
        manifest.exports = [ExportRecord(name=n, path=p, bytes=sizes[n]) for n, p in spec.output.paths().items()]
    _record_cost(manifest, time.time() - job_started)
    if action == "evaluate":
        shutil.rmtree(staging, ignore_errors=True)
        eval_hash = str(bundle.run.eval_hash)
        _write_report(registry.evals_dir(repo, key, eval_hash), manifest, echo)
        registry.publish_evals(repo, key, eval_hash)
        return 0 if table.passed else 1
    _write_report(staging, manifest, echo)
    from tuneform.job.report import model_card

    (staging / "model" / "README.md").write_text(model_card(manifest), encoding="utf-8")  # replaces PEFT's stub card
    return _publish(registry, bundle, staging, manifest, echo)


def _publish(registry: JobRegistry, bundle: Bundle, staging: Path, manifest: Manifest, echo: Echo) -> int:
    """Publish the version; move main only when gates passed and main is still the commit apply
    saw (the registry checks and moves in one step: registry/protocol.py)."""
    from tuneform.core.hub import hub_failures
    from tuneform.registry.local import RegistryError

    key, repo = bundle.key, bundle.run.output_repo
    passed = manifest.passed
    try:
        published = registry.publish(repo, key, staging, manifest, parent_commit=bundle.run.expected_main_commit, move_main=passed)
    except hub_failures() + (RegistryError,) as exc:  # the Hub failed after retries: the job says so and fails
        detail = str(exc) if isinstance(exc, (RegistryError, OSError)) else f"{type(exc).__name__}: {exc}"
        echo(f"error: publishing run-{key[:12]} to {repo} failed: {detail}")
        return 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    echo(f"published run-{key[:12]} to {repo} ({published.version.status})")
    echo(published.note)
    if not passed:
        echo("gates failed: the version is kept and marked; main did not move")
        return 1
    return 0


def _train(
    bundle: Bundle, model_path: str, registry: JobRegistry, data: Any, staging: Path, echo: Echo, processes: int | None
) -> tuple[Any, int | None]:
    """The training step: in this process, or on several (DDP, one per GPU) through train/launch.py.
    Returns the TrainResult and the step it resumed from (None: from the start)."""
    import gc

    import torch

    from tuneform.train.engine import train
    from tuneform.train.launch import (
        TrainRequest,
        train_distributed,
        training_processes,
    )
    from tuneform.train.tracking import logs_dir

    spec = bundle.spec
    batch_size, checkpointing = sized_auto_settings(bundle.run.estimate)
    compile = planned_compile(bundle.run.estimate)
    count = training_processes(processes)
    work, minutes = _work_branch(bundle, registry, count, batch_size, checkpointing)
    resume = work.resume(logs_dir(staging / "model")) if work else None
    resume_from, resumed = (resume.folder, resume.step) if resume else (None, None)
    echo(f"training ({spec.method.type}, {spec.compute.engine} engine" + (f", {count} processes with DDP)" if count > 1 else ")"))
    if count == 1:
        from tuneform.job.checkpoints import checkpoint_callback

        callbacks = [checkpoint_callback(work, minutes * 60)] if work and minutes > 0 else []
        result = train(
            spec,
            model_path,
            data.train,
            data.eval,
            staging / "model",
            on_log=progress_printer(echo),
            batch_size=batch_size,
            gradient_checkpointing=checkpointing,
            compile=compile,
            resume_from=resume_from,
            callbacks=callbacks,
        )
        # The trainer, model and optimizer hold reference cycles: free them now, not at some later
        # collection, so that scoring the new model has the GPU to itself (on a 24 GB card an 8B
        # model's scoring needs most of it).
        gc.collect()
        torch.cuda.empty_cache()
        return result, resumed
    torch.cuda.empty_cache()  # the scoring passes' cached blocks would crowd the first GPU
    request = TrainRequest(
        bundle=str(bundle.path.resolve()),
        model=model_path,
        out_dir=str((staging / "model").resolve()),
        result=str((staging / "ddp" / "result.json").resolve()),
        batch_size=batch_size,
        gradient_checkpointing=checkpointing,
        compile=compile,
        resume_from=str(resume_from) if resume_from else None,
        checkpoint_minutes=minutes if work else 0.0,
        checkpoint_settings=work.settings if work else None,
    )
    return train_distributed(request, count, echo), resumed


def _work_branch(
    bundle: Bundle, registry: JobRegistry, processes: int, batch_size: int | None, checkpointing: bool | None
) -> tuple[WorkBranch | None, float]:
    """The run's work branch, where checkpoints go every `minutes` and where a retried job finds
    one to resume from; None where the registry keeps none (a local job has nothing that retries
    it, so it neither saves nor resumes: see job/checkpoints.py)."""
    if not registry.checkpoints:
        return None, 0.0
    from tuneform.job.checkpoints import resume_settings

    work = registry.work_branch(bundle.run.output_repo, bundle.key, resume_settings(bundle.spec, processes, batch_size, checkpointing))
    return work, bundle.run.checkpoint_minutes


def sized_auto_settings(estimate: PlannedEstimate | None) -> tuple[int | None, bool | None]:
    """The estimate's batch size and checkpointing for the `auto` settings, when it sized the
    device the job runs on. The local backend estimates this machine's CPU (dtype fp32); on a
    machine with a GPU those numbers do not apply, so the engine's GPU defaults decide."""
    if not _sized_this_device(estimate):
        return None, None
    assert estimate is not None
    return estimate.batch_size, estimate.gradient_checkpointing


def planned_compile(estimate: PlannedEstimate | None) -> CompileMode | None:
    """What the plan chose for Unsloth to compile (estimate/estimator.py compile_mode), when it
    sized this device; None lets the engine decide."""
    if not _sized_this_device(estimate) or estimate is None or estimate.compile not in get_args(CompileMode):
        return None
    return cast(CompileMode, estimate.compile)


def _sized_this_device(estimate: PlannedEstimate | None) -> bool:
    import torch

    return estimate is not None and not (estimate.dtype == "fp32" and torch.cuda.is_available())


def _record_cost(manifest: Manifest, seconds: float) -> None:
    """Job seconds and cost (flavor price x billed minutes) next to the estimate. Measured inside the
    job, so it leaves out the container's start (image pull, install), which HF also bills."""
    import math
    import os

    cost = manifest.cost
    assert cost is not None, "the job's manifest always has a cost"
    cost.job_seconds = round(seconds, 1)
    cost.job_id = os.environ.get("JOB_ID")
    if manifest.backend != "hf-jobs":
        return
    from tuneform.estimate.catalog import FLAVORS

    flavor = FLAVORS.get(str(manifest.flavor))
    minutes = max(1, math.ceil(seconds / 60))
    cost.billed_minutes = minutes
    cost.usd_per_hour = flavor.usd_per_hour if flavor else None
    cost.actual_usd = round(flavor.usd_per_hour / 60 * minutes, 4) if flavor else None


def _manifest(
    bundle: Bundle,
    data: Any,
    result: Any,
    table: Any,
    base: Any,
    previous_key: str | None,
    resumed_from_step: int | None,
    staging: Path,
    parent: ParentVersion | None = None,
) -> Manifest:
    """Everything a version records about itself (tuneform/manifest.json on the Hub)."""
    run = bundle.run
    estimate = run.estimate
    training = None
    if result is not None:
        training = Training(
            seconds=result.seconds,
            tokens_per_second=result.tokens_per_second,
            steady_tokens_per_second=result.steady_tokens_per_second,
            warmup_seconds=result.warmup_seconds,
            device=result.device_name,
            steps=result.steps,
            train_loss=result.train_loss,
            loss_history=list(result.loss_history),
            peak_memory_gb=result.peak_memory_bytes / 2**30,
            peak_memory_kind=result.peak_memory_kind,
            tokens=result.tokens,
            trained_tokens=result.trained_tokens,
            settings=result.as_json()["settings"],
            resumed_from_step=resumed_from_step,
        )
    return Manifest(
        run_key=bundle.key,
        name=run.name,
        path=run.path,
        output_repo=run.output_repo,
        status=PASSED if table.passed else FAILED_GATES,
        created=_stamp(),
        backend=run.backend,
        flavor=estimate.flavor if estimate else "local",
        git=run.git,
        lineage=_lineage(bundle, parent),
        spec=run.spec.model_dump(mode="json"),
        eval_hash=run.eval_hash,
        data=DataCounts(
            train_rows=len(data.train),
            eval_rows=len(data.eval),
            bad_rows=len(data.bad_rows),
            train_tokens=result.tokens if result else None,
        ),
        training=training,
        cost=Cost(
            estimated_usd=estimate.usd if estimate else 0.0,
            actual_usd=0.0 if run.backend == "local" else None,
            estimated_seconds=estimate.seconds if estimate else None,
        ),
        # What the plan predicted, beside `training`'s measurements: `tuneform calibrate` reads both.
        estimate=estimate.recorded() if estimate else None,
        evals=Evals(
            table=EvalTable.model_validate(table.as_json()),
            gates=[Gate.model_validate(g) for g in table.gates_json()],
            previous=previous_key,
            scores={"base": base.as_json()},
        ),
        versions=result.versions if result else {},
        python=sys.version.split()[0],
        tracking=_tracking(bundle, result, staging),
    )


def _tracking(bundle: Bundle, result: Any, staging: Path) -> Tracking | None:
    """What the run's tracker kept: its run's page and the files it left in staging's logs/
    (train/tracking.py), which publish with the version."""
    from tuneform.train.tracking import LOGS

    report_to = bundle.spec.training.report_to
    if result is None or report_to == "none":
        return None
    logs = staging / LOGS
    files = sorted(p.relative_to(staging).as_posix() for p in logs.rglob("*") if p.is_file()) if logs.is_dir() else []
    return Tracking(report_to=report_to, url=result.tracker_url, files=files)


def _lineage(bundle: Bundle, parent: ParentVersion | None) -> Lineage:
    """What trained the version beyond its run file: the bytes of every local data file and of a
    local model folder as the job read them (the same hashes the run key was made of), the
    revisions the plan resolved, the version it started from, and the GPU."""
    import torch

    spec = bundle.spec
    tree = WorkTree(bundle.files)
    paths = dict.fromkeys(src.path for src in [*spec.data.train, *spec.data.eval] if isinstance(src, LocalSource))
    model_sha256 = None
    if spec.model.is_local:
        local = spec.model.id.startswith("/")
        model_sha256 = hash_local_dir(Path(spec.model.id)) if local else hash_folder(tree, local_model_dir(spec.model.id) + "/")
    cuda = torch.cuda.is_available()
    return Lineage(
        model_id=spec.model.id,
        model_revision=None if spec.model.is_local else bundle.run.model_revision or spec.model.revision,
        model_sha256=model_sha256,
        data=[FileHash(path=path, sha256=tree.sha256(path)) for path in paths],
        datasets=bundle.run.dataset_revisions,
        gpu=torch.cuda.get_device_name(0) if cuda else None,
        gpu_count=torch.cuda.device_count() if cuda else 0,
        parent=parent,
    )


def starting_model(bundle: Bundle, registry: JobRegistry, work: Path, echo: Echo) -> tuple[str, ParentVersion | None]:
    """The model the run trains and is scored from: `model.id` itself, or the tuneform version
    that `model.revision: run-<key12>` names in the output repo `model.id`, read from the registry
    the job publishes to (the Hub repo, or the local folder).

    A merged version is a model folder as it is. An adapter version is merged into its own base
    (the one its manifest names, at the revision it trained on) in `work`, so a preference run
    trains a fresh adapter on the SFT weights and its reference is the SFT model; the adapter it
    publishes therefore applies to that merged model (save: merged ships one self-contained model).
    """
    spec = bundle.spec
    key12 = spec.model.version_tag
    if key12 is None:
        return bundle.model_path(), None
    repo = spec.model.id
    found = [v for v in registry.versions(repo) if v.key.startswith(key12)]
    if not found:
        raise BundleError(
            f"model.revision run-{key12}: {repo} has no such tuneform version in this registry: "
            f"name one that `tuneform history` lists for the run that publishes to {repo}"
        )
    version = found[0]
    folder = registry.model_dir(repo, version.key)
    parent = ParentVersion(repo=repo, run_key=version.key, save=", ".join(version.manifest.saves) or None)
    if not (folder / "adapter_config.json").is_file():
        echo(f"starting from {repo} run-{key12} (merged weights)")
        return str(folder), parent
    base = version.manifest.hub_model_id
    if base is None:
        raise BundleError(
            f"model.revision run-{key12}: that version is an adapter on the local model {version.manifest.model_id}, which this job cannot load: "
            "start from a version saved with output.save: merged"
        )
    echo(f"starting from {repo} run-{key12} (adapter merged into {base})")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(base, revision=version.manifest.model_revision, dtype="auto")
    merged = PeftModel.from_pretrained(loaded, str(folder)).merge_and_unload()
    merged.save_pretrained(str(work))
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(work))
    return str(work), parent


def _write_report(folder: Path, manifest: Manifest, echo: Echo) -> None:
    """report.md (the PR comment), report.json, loss.png; and the terminal report on stdout."""
    from tuneform.job.report import render_run, write_run_report

    write_run_report(manifest, folder)
    echo(render_run(manifest, "text", color=sys.stdout.isatty()))


def import_engine_first(bundle: Bundle) -> None:
    """Unsloth must be imported before transformers, trl and peft (it patches them on import):
    choosing the engine first imports it when it will be used."""
    import torch

    from tuneform.train.engine import choose_engine

    if planned_compile(bundle.run.estimate) == "none":
        # Unsloth reads it as it is imported: nothing compiled must be asked for before.
        os.environ["UNSLOTH_COMPILE_DISABLE"] = "1"
    choose_engine(bundle.spec.compute.engine, cuda=torch.cuda.is_available())


def quiet_libraries() -> None:
    """The job prints its own progress; library progress bars would interleave with it in logs."""
    import datasets
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def install_sigterm() -> None:
    """SIGTERM (cancel) unwinds like Ctrl-C, so the staging folder is removed on the way out."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
