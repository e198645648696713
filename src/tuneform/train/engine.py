"""Train a run: pick an engine, load the model, feed TRL's SFTTrainer tuneform's tokens, save.

Two engines share one path and differ only in how the model is loaded and wrapped:
- trl: transformers AutoModelForCausalLM (+ PEFT LoRA, + bitsandbytes 4-bit for qlora). Runs on
  CPU and GPU; it is what the tests train.
- unsloth: FastLanguageModel.from_pretrained + get_peft_model, CUDA only. Unsloth patches
  transformers, trl and peft when imported, so it is imported before any of them, and this module
  imports those libraries only inside functions, after the engine is chosen.

The trainer receives a pre-tokenised dataset of `input_ids` and `labels`, where `labels` is -100
wherever tuneform's mask (train/format.py) says not to train. TRL 1.14 uses a `labels` column as
is; a `completion_mask` column would be applied only when `completion_only_loss` resolves to
true, which for a pre-tokenised dataset it does not by default, and Unsloth re-derives that
setting on its own: labels leave nothing for either to decide.

Every training argument is set from the run file or from a setting resolved here (`Settings`,
recorded in the manifest), never left to a library default: TRL's defaults differ from
transformers' (bf16 on, gradient checkpointing on) and Unsloth's from TRL's.
"""

from __future__ import annotations

import importlib.metadata
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tuneform.core.errors import TuneformError
from tuneform.data.reader import Example
from tuneform.estimate.estimator import CompileMode, compile_mode
from tuneform.runfile.spec import PREFERENCE_METHODS, RunSpec
from tuneform.train import fused_lfm2, packed_attention, packing, preference, tracking
from tuneform.train.format import Tokenized, TokenizedPair, load_tokenizer, tokenize_all
from tuneform.train.preference import DPO_LOSS

if TYPE_CHECKING:
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTConfig, SFTTrainer

OnLog = Callable[[int, int, float, int, float], None]
"""on_log(step, total_steps, loss, tokens_seen, elapsed_seconds), called at every logging step."""

Engine = Literal["trl", "unsloth"]
Precision = Literal["bf16", "fp16", "fp32"]
# Batch sizes when the run says `auto` and the caller has not sized it from the flavor's memory.
DEFAULT_BATCH = {"cuda": 8, "cpu": 4}
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


class TrainError(TuneformError):
    """The run cannot train as written here; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """Everything `auto` in a run file resolved to on this machine; goes to the manifest."""

    engine: Engine
    device: Literal["cuda", "cpu"]
    precision: Precision
    optim: str
    batch_size: int
    gradient_checkpointing: bool
    packing: bool
    loss_type: str
    processes: int = 1  # data-parallel training processes (one per GPU under DDP)
    attention: str = "n/a"  # how packed documents are attended (train/packed_attention.py Route)
    packing_route: str = "n/a"  # how packed documents are kept apart, or why not (train/packing.py)
    compile: str = "n/a"  # unsloth: what it compiled (estimate/estimator.py CompileMode); trl: n/a
    kernels: str = "n/a"  # unsloth, nothing compiled: "fused" where train/fused_lfm2.py routed LFM2's layers


@dataclass
class TrainResult:
    """What a training run did, measured by tuneform."""

    steps: int
    train_loss: float  # mean training loss over the run, as the trainer reports it
    loss_history: list[tuple[int, float]]  # (step, loss) at each logging step
    eval_loss: float | None
    tokens: int  # tokens fed to the model, padding excluded
    trained_tokens: int  # of those, tokens with a label (the loss covers them)
    seconds: float  # the training loop alone: no loading, tokenising or saving
    tokens_per_second: float
    # After the first fifth of the steps, when compilation and warm-up are over: the rate the
    # estimator prices (it adds warm-up separately). None for runs of fewer than STEADY_MIN_STEPS.
    steady_tokens_per_second: float | None
    device_name: str  # the GPU the rates were measured on ("NVIDIA H200"), or "cpu"
    peak_memory_bytes: int
    peak_memory_kind: Literal["cuda_max_allocated", "process_max_rss"]
    examples: int
    skipped_examples: int  # examples left with no trained token by truncation
    settings: Settings
    versions: dict[str, str] = field(default_factory=dict)
    # The loop's seconds beyond what its tokens take at the steady rate: compilation, autotuning
    # and the first batches (None without a steady rate).
    warmup_seconds: float | None = None
    tracker_url: str | None = None  # the tracked run's page (wandb, mlflow, trackio), when it has one

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["loss_history"] = [list(point) for point in self.loss_history]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainResult:
        """The inverse of `as_json`: how a training process hands its result to the job."""
        fields = dict(data)
        fields["loss_history"] = [(int(step), float(loss)) for step, loss in fields["loss_history"]]
        fields["settings"] = Settings(**fields["settings"])
        return cls(**fields)


@dataclass
class Prepared:
    """A trainer ready to run, with what `train` needs to report on it."""

    trainer: SFTTrainer  # or DPOTrainer for preference methods: the same Trainer interface
    tokenizer: PreTrainedTokenizerBase
    settings: Settings
    train_rows: list[Tokenized] | list[TokenizedPair]
    skipped_examples: int
    counter: TokenCounter
    tracker_urls: list[str] = field(default_factory=list)  # filled when training begins (train/tracking.py)


# ---------------------------------------------------------------------------------------------
# The run, top to bottom


def train(
    spec: RunSpec,
    model_dir_or_id: str,
    examples: list[Example],
    eval_examples: list[Example],
    out_dir: Path,
    *,
    on_log: OnLog | None = None,
    batch_size: int | None = None,
    gradient_checkpointing: bool | None = None,
    compile: CompileMode | None = None,
    resume_from: Path | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train `examples`, score `eval_examples`' loss, save the adapter or weights to `out_dir`;
    a tracker's local files (report_to: tensorboard) go to `logs/` beside it (train/tracking.py).

    `batch_size` and `gradient_checkpointing` resolve the run's `auto` values (the caller sizes
    them for the flavor's memory); a value written in the run file always wins. `compile` is the
    plan's choice of what Unsloth compiles (None: decided here). `resume_from` is
    a trainer checkpoint folder to continue from; `callbacks` are extra TrainerCallbacks.

    Under DDP (several processes started by `accelerate launch`, see train/launch.py) every
    process calls this; token counts are summed over processes, and only the first one saves.
    """
    import torch

    prepared = prepare(
        spec,
        model_dir_or_id,
        examples,
        eval_examples,
        out_dir,
        on_log=on_log,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
        compile=compile,
        callbacks=callbacks,
    )
    trainer = prepared.trainer
    if prepared.settings.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    ended = time.perf_counter()
    seconds = ended - started
    settings = prepared.settings
    if settings.engine == "trl":  # what the attention function ran, not only what was loaded
        from tuneform.train import varlen_attention

        settings = replace(settings, attention=varlen_attention.ran(settings.attention))
    counter = prepared.counter
    tokens, trained_tokens = counter.totals(trainer.args.device)
    steady = None
    if counter.mark is not None and counter.mark[0] < tokens and ended > counter.mark[1]:
        steady = (tokens - counter.mark[0]) / (ended - counter.mark[1])
    warmup = max(0.0, seconds - tokens / steady) if steady else None

    eval_loss = None
    if trainer.eval_dataset is not None:
        eval_loss = float(trainer.evaluate()["eval_loss"])

    kind: Literal["cuda_max_allocated", "process_max_rss"]
    if prepared.settings.device == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(), "cuda_max_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"  # KiB on Linux
    if trainer.is_world_process_zero():
        save(trainer, prepared.tokenizer, spec, prepared.settings, out_dir)
    history = _step_losses(trainer.state.log_history)
    train_loss = float(output.training_loss)
    if resume_from is not None and history:
        # the trainer sums only the resumed steps' losses, then divides by every step's count
        train_loss = _mean_over_steps(history)
    return TrainResult(
        steps=output.global_step,
        train_loss=train_loss,
        loss_history=history,
        eval_loss=eval_loss,
        tokens=tokens,
        trained_tokens=trained_tokens,
        seconds=seconds,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        steady_tokens_per_second=steady,
        device_name=torch.cuda.get_device_name() if prepared.settings.device == "cuda" else "cpu",
        peak_memory_bytes=int(peak),
        peak_memory_kind=kind,
        examples=len(prepared.train_rows),
        skipped_examples=prepared.skipped_examples,
        settings=settings,
        versions=library_versions(settings, spec),
        warmup_seconds=warmup,
        tracker_url=next(iter(prepared.tracker_urls), None),
    )


def prepare(
    spec: RunSpec,
    model_dir_or_id: str,
    examples: list[Example],
    eval_examples: list[Example],
    out_dir: Path,
    *,
    on_log: OnLog | None = None,
    batch_size: int | None = None,
    gradient_checkpointing: bool | None = None,
    compile: CompileMode | None = None,
    callbacks: list[Any] | None = None,
) -> Prepared:
    """Everything up to `trainer.train()`: checks, engine, tokens, model, trainer.

    Cheap checks and tokenisation come before the model is loaded, so a bad run fails in seconds.
    """
    import torch

    cuda = torch.cuda.is_available()
    engine = choose_engine(spec.compute.engine, cuda=cuda)  # imports unsloth first when chosen
    check_runnable(spec, engine=engine, cuda=cuda)
    attention = packed_attention.enable_for_unsloth(spec.compute.attention) if engine == "unsloth" else "n/a"
    settings = resolve_settings(
        spec,
        engine=engine,
        cuda=cuda,
        bf16_supported=cuda and torch.cuda.is_bf16_supported(),
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
        processes=process_count(),
    )
    settings = replace(settings, attention=attention)
    model_path = _absolute(model_dir_or_id)

    from transformers import set_seed

    set_seed(spec.training.seed)  # before the model exists: LoRA weights are initialised at random
    tokenizer = load_tokenizer(model_path, spec.model)
    tracking.point_tracker_at(spec.training.report_to, out_dir)  # before any trainer is built
    if spec.method.type in PREFERENCE_METHODS:
        return _prepare_preference(spec, model_path, tokenizer, examples, eval_examples, out_dir, settings, on_log, callbacks, compile)
    train_rows, skipped = _tokenize(examples, tokenizer, spec)
    if not train_rows:
        raise TrainError(
            f"no training example has a token to train within model.max_seq_length ({spec.model.max_seq_length}): raise it or check the data"
        )
    eval_rows, _ = _tokenize(eval_examples, tokenizer, spec)
    settings = _set_compile(spec, settings, [len(row.input_ids) for row in train_rows], compile)

    model: PreTrainedModel | PeftModel
    if engine == "unsloth":
        model, settings = _load_unsloth(spec, model_path, settings)
    else:
        # Packed rows' attention is chosen as the model loads (a varlen call where the GPU has
        # torch's flash kernels); the route recorded is the one transformers then set.
        head_dim = packed_attention.head_dim_of(_config(spec, model_path)) if settings.packing else 0
        implementation = packed_attention.for_trl(
            spec.compute.attention, packing=settings.packing, precision=settings.precision, head_dim=head_dim
        )
        model = _load_trl(spec, model_path, settings, implementation)
    # Packing only where this model's packed rows are exact: the padded path (and a warning) otherwise.
    decided = packing.apply(model, engine=engine, requested=settings.packing)
    settings = replace(settings, packing=decided.packing, packing_route=decided.route)

    from trl import SFTTrainer

    counter = TokenCounter()
    trainer = SFTTrainer(
        model=model,
        args=sft_config(spec, settings, out_dir),
        train_dataset=_dataset(train_rows),
        eval_dataset=_dataset(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[_progress_callback(on_log, counter), *(callbacks or [])],
    )
    ran = packing.as_run(decided, engine_packs=bool(getattr(trainer.args, "packing", False)))
    settings = replace(settings, packing=ran.packing, packing_route=ran.route)
    if engine == "trl":
        settings = replace(settings, attention=packed_attention.trl_route(model, packing=ran.packing))
    return _prepared(trainer, tokenizer, settings, train_rows, skipped, counter)


def _prepared(
    trainer: Any,
    tokenizer: PreTrainedTokenizerBase,
    settings: Settings,
    rows: list[Tokenized] | list[TokenizedPair],
    skipped: int,
    counter: TokenCounter,
) -> Prepared:
    """What every built trainer gets before it runs: its printer off (the job reports through
    on_log), the tracked run's link collected, its tensorboard files whole at each checkpoint,
    and its batches counted."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    urls: list[str] = []
    trainer.add_callback(tracking.link_callback(trainer.callback_handler, urls))
    trainer.add_callback(tracking.whole_logs_callback(trainer.callback_handler))
    # Counting in the collator sees every batch the model gets. TRL builds its own collator (and
    # refuses a custom one with packing), so it is wrapped once built.
    counter.collate = trainer.data_collator
    trainer.data_collator = counter
    return Prepared(trainer, tokenizer, settings, rows, skipped, counter, urls)


def _set_compile(spec: RunSpec, settings: Settings, row_lengths: list[int], planned: CompileMode | None) -> Settings:
    """Unsloth: what it compiles. The plan's choice; without a plan, the same rule on the tokens this
    job trains (the architecture unknown, so never "none": that must be in the environment before
    Unsloth is imported, job/pipeline.py). Records what runs."""
    if settings.engine != "unsloth":
        return settings
    mode = planned or compile_mode(spec.compute.compile, planned_tokens(spec, settings, row_lengths), "")
    mode = "none" if os.environ.get("UNSLOTH_COMPILE_DISABLE") == "1" else "off" if mode == "none" else mode
    # Unsloth reads this when it wraps the decoder blocks, inside from_pretrained/get_peft_model.
    os.environ["UNSLOTH_BLOCK_COMPILE"] = "1" if mode == "blocks" else "0"
    return replace(settings, compile=mode)


def _prepare_preference(
    spec: RunSpec,
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    eval_examples: list[Example],
    out_dir: Path,
    settings: Settings,
    on_log: OnLog | None,
    callbacks: list[Any] | None,
    compile: CompileMode | None,
) -> Prepared:
    """`prepare` for preference methods: pairs instead of masked rows, DPO's trainer instead of
    SFT's, the LoRA adapter as the policy and the adapter switched off as the reference
    (train/preference.py). Packing does not apply: each pair is two sequences scored side by side."""
    train_pairs, skipped = preference.tokenize_pairs(examples, tokenizer, spec)
    if not train_pairs:
        raise TrainError(
            f"no preference pair keeps a token of both answers within model.max_seq_length ({spec.model.max_seq_length}): "
            "raise it or shorten the prompts"
        )
    eval_pairs, _ = preference.tokenize_pairs(eval_examples, tokenizer, spec)
    settings = _set_compile(spec, settings, [len(p.prompt_ids) * 2 + len(p.chosen_ids) + len(p.rejected_ids) for p in train_pairs], compile)
    model: PreTrainedModel | PeftModel
    peft_config: LoraConfig | None
    if settings.engine == "unsloth":
        from unsloth import PatchDPOTrainer

        PatchDPOTrainer()  # Unsloth's entry point for DPO (its trainers are patched when it is imported)
        (model, settings), peft_config = _load_unsloth(spec, model_path, settings), None
    else:
        model, peft_config = _load_trl(spec, model_path, settings, adapters=False), lora_config(spec)

    counter = TokenCounter()
    trainer = preference.dpo_trainer(
        model,
        preference.dpo_config(spec, trainer_arguments(spec, settings, out_dir)),
        tokenizer,
        train_pairs,
        eval_pairs,
        peft_config=peft_config,
        callbacks=[_progress_callback(on_log, counter), *(callbacks or [])],
    )
    return _prepared(trainer, tokenizer, settings, train_pairs, skipped, counter)


# ---------------------------------------------------------------------------------------------
# Checks and resolved settings


def check_runnable(spec: RunSpec, *, engine: Engine, cuda: bool) -> None:
    """Refuse, before any model or data is loaded, what cannot work on this machine."""
    if spec.method.type == "qlora" and not cuda:
        raise TrainError(
            "qlora needs a CUDA GPU (bitsandbytes 4-bit kernels) and none is visible: use method.type lora on CPU, or a GPU flavor"
        )
    if spec.training.precision == "fp16" and not cuda:
        raise TrainError("precision fp16 needs a CUDA GPU: use precision auto (fp32 on CPU) or bf16")
    if spec.compute.engine == "unsloth" and not cuda:
        raise TrainError("engine unsloth trains on CUDA GPUs and none is visible: set compute.engine: trl (or auto)")
    missing = tracking.missing_client(spec.training.report_to)
    if missing:
        raise TrainError(missing)
    if reason := preference.untrained(spec):
        raise TrainError(reason)
    if spec.method.type == "qlora" and engine == "trl" and spec.output.exports != ("adapter",):
        raise TrainError("output.save merged or gguf with qlora needs engine unsloth (it merges into 16-bit weights): use save: adapter")


def planned_tokens(spec: RunSpec, settings: Settings, row_lengths: list[int]) -> int:
    """Tokens the job will train: the epochs over the rows, or max_steps batches of rows as long
    as the mean row (a packed row is up to max_seq_length, which the mean of unpacked rows
    underestimates: a max_steps job compiles a little later than it could)."""
    t = spec.training
    if t.max_steps is not None:
        mean = sum(row_lengths) / max(1, len(row_lengths))
        return int(t.max_steps * settings.batch_size * t.gradient_accumulation_steps * settings.processes * mean)
    return int(sum(row_lengths) * (t.num_train_epochs or 1))


def choose_engine(requested: str, *, cuda: bool) -> Engine:
    """`auto` is Unsloth on a CUDA GPU where it is installed, else TRL.

    Unsloth is imported here, before anything imports transformers, trl or peft: it patches them
    at import time and warns (and is slower) when it comes second.
    """
    if requested == "trl" or not cuda:
        return "trl"
    try:
        import unsloth  # noqa: F401
    except ImportError as exc:
        if requested == "unsloth":
            raise TrainError(
                "engine unsloth: the unsloth package is not installed: pip install 'tuneform[unsloth]', or set compute.engine: trl"
            ) from exc
        return "trl"
    return "unsloth"


def resolve_settings(
    spec: RunSpec,
    *,
    engine: Engine,
    cuda: bool,
    bf16_supported: bool,
    batch_size: int | None = None,
    gradient_checkpointing: bool | None = None,
    processes: int = 1,
) -> Settings:
    """Resolve the run's `auto` values for this machine; pure, so it is testable without a GPU."""
    t = spec.training
    device: Literal["cuda", "cpu"] = "cuda" if cuda else "cpu"
    precision: Precision
    if t.precision != "auto":
        precision = t.precision
    elif cuda:
        precision = "bf16" if bf16_supported else "fp16"  # T4 and older have no bf16
    else:
        precision = "fp32"
    if precision == "bf16" and cuda and not bf16_supported:
        raise TrainError("precision bf16: this GPU has no bf16 (T4 and older): use precision fp16 or auto")
    if t.optim != "auto":
        optim = t.optim
    else:
        optim = "adamw_torch_fused" if cuda else "adamw_torch"
    if t.per_device_train_batch_size != "auto":
        batch = int(t.per_device_train_batch_size)
    else:
        batch = batch_size or DEFAULT_BATCH[device]
    if t.gradient_checkpointing != "auto":
        checkpointing = bool(t.gradient_checkpointing)
    else:
        checkpointing = bool(gradient_checkpointing)
    # TRL's chunked loss projects only trained tokens through the LM head (a large share of
    # memory at 128k vocabularies); it cannot when the head itself carries a LoRA adapter.
    # Unsloth computes its own fused loss, so it gets the plain one.
    head_adapted = isinstance(spec.method.target_modules, list) and "lm_head" in spec.method.target_modules
    loss_type = "chunked_nll" if engine == "trl" and not head_adapted else "nll"
    packs = t.packing
    if spec.method.type in PREFERENCE_METHODS:
        # A pair is two sequences scored side by side: nothing is packed, and the loss is DPO's.
        packs, loss_type = False, DPO_LOSS
    return Settings(engine, device, precision, optim, batch, checkpointing, packs, loss_type, processes)


def trainer_arguments(spec: RunSpec, settings: Settings, out_dir: Path) -> dict[str, Any]:
    """The arguments every tuneform trainer shares (SFT and preference), each from the run file or
    from the resolved settings; the trainers' configs add what is their own."""
    t = spec.training
    return dict(
        output_dir=str(out_dir),
        # How long and how fast
        num_train_epochs=t.num_train_epochs if t.num_train_epochs is not None else 1.0,
        max_steps=t.max_steps if t.max_steps is not None else -1,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        # transformers 5 dropped warmup_ratio: a float below 1 in warmup_steps is the ratio.
        warmup_steps=t.warmup_ratio if t.warmup_ratio else t.warmup_steps,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=settings.optim,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        gradient_checkpointing=settings.gradient_checkpointing,
        bf16=settings.precision == "bf16",
        fp16=settings.precision == "fp16",
        use_cpu=settings.device == "cpu",
        seed=t.seed,
        data_seed=t.seed,
        torch_compile=False,
        use_liger_kernel=False,
        # The data: tokenised, masked and truncated by tuneform
        max_length=spec.model.max_seq_length,
        truncation_mode="keep_start",
        padding_free=False,
        dataset_num_proc=None,
        remove_unused_columns=True,
        loss_type=settings.loss_type,
        # Around the loop: the job logs, evaluates and saves itself
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=False,
        eval_strategy="no",
        save_strategy="no",
        report_to=spec.training.report_to,  # the trackers' own integrations; train/tracking.py places their files
        disable_tqdm=True,
        push_to_hub=False,
        dataloader_num_workers=0,  # the collator counts tokens: it must run in this process
        dataloader_pin_memory=settings.device == "cuda",
        dataloader_drop_last=False,
        # Under DDP: every trainable weight (LoRA adapters, or all of a full fine-tune) takes
        # part in every step, so DDP need not search the graph for unused ones after each forward.
        ddp_find_unused_parameters=False,
    )


def sft_config(spec: RunSpec, settings: Settings, out_dir: Path) -> SFTConfig:
    """The SFT trainer's arguments: the shared ones, and how SFT rows are fed."""
    from trl import SFTConfig

    return SFTConfig(
        **trainer_arguments(spec, settings, out_dir),
        # No KV cache in training: with one, transformers stops reading packed documents'
        # boundaries from position ids and lets them attend to each other.
        use_cache=False,
        packing=settings.packing,
        packing_strategy="bfd",  # whole examples, never cut, kept apart by position ids (padding_free off: implied by bfd)
        eval_packing=False,  # eval loss per example
        completion_only_loss=False,  # the labels carry the mask
        assistant_only_loss=False,
        shuffle_dataset=False,  # load_data shuffled with the seed; the sampler reshuffles per epoch
    )


def lora_config(spec: RunSpec) -> LoraConfig:
    """PEFT LoRA settings from the run's method."""
    from peft import LoraConfig

    m = spec.method
    # MethodSpec fills these for lora and qlora; only full fine-tuning leaves them None.
    assert m.r is not None and m.alpha is not None and m.dropout is not None, "lora_config of a full fine-tuning run"
    return LoraConfig(
        r=m.r,
        lora_alpha=m.alpha,
        lora_dropout=m.dropout,
        target_modules=m.target_modules,
        use_rslora=bool(m.use_rslora),
        bias="none",
        task_type="CAUSAL_LM",
    )


# ---------------------------------------------------------------------------------------------
# Data for the trainer


def _tokenize(examples: list[Example], tokenizer: PreTrainedTokenizerBase, spec: RunSpec) -> tuple[list[Tokenized], int]:
    """Tokenised examples that still have a trained token after truncation, and how many did not."""
    rows = tokenize_all(examples, tokenizer, train_on=spec.training.train_on, max_seq_length=spec.model.max_seq_length)
    kept = [row for row in rows if any(row.completion_mask)]
    return kept, len(rows) - len(kept)


def _dataset(rows: list[Tokenized]) -> Dataset:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})


def process_count() -> int:
    """Processes training together: WORLD_SIZE under `accelerate launch`/torchrun, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class TokenCounter:
    """Wraps the trainer's collator (`collate`) and counts what goes into the model."""

    def __init__(self) -> None:
        self.collate: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
        self.tokens = 0
        self.trained = 0
        # (tokens over all processes, perf_counter) when warm-up is taken to be over: the start
        # of the steady rate. The dataloader may have fetched one batch ahead by then, so the
        # rate is off by about one batch in the steps after the mark.
        self.mark: tuple[int, float] | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.collate is not None, "TokenCounter.collate is set once the trainer has built its collator"
        batch = self.collate(examples)
        attention = batch.get("attention_mask")
        # Padding-free batches (packing) have no attention mask and no padding.
        self.tokens += int(attention.sum()) if attention is not None else int(batch["input_ids"].numel())
        # SFT batches mark trained tokens in labels; preference batches in completion_mask.
        trained = batch["labels"] != -100 if "labels" in batch else batch["completion_mask"] != 0
        self.trained += int(trained.sum())
        return batch

    def totals(self, device: Any) -> tuple[int, int]:
        """(tokens, trained tokens) over every training process: each counts only the batches
        its own dataloader gave it. Every process must call this at the same point (a collective)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.tokens, self.trained
        import torch

        counts = torch.tensor([self.tokens, self.trained], dtype=torch.int64, device=device)
        dist.all_reduce(counts)
        return int(counts[0]), int(counts[1])


STEADY_MIN_STEPS = 10
"""Runs this long or longer report a steady rate, measured from the end of their first fifth."""


def _step_losses(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, loss) at each logging step, from the trainer's own log. A resumed run's log starts
    with the checkpoint's (trainer_state.json), so the history is the whole run's, not only what
    ran since the resume."""
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry]


def _mean_over_steps(history: list[tuple[int, float]]) -> float:
    """The mean step loss of a run from its logged losses: each logged value is the mean over the
    steps since the one logged before it."""
    total, previous = 0.0, 0
    for step, loss in history:
        total, previous = total + loss * (step - previous), step
    return total / previous


def _progress_callback(on_log: OnLog | None, counter: TokenCounter) -> Any:
    """A TrainerCallback that reports progress and marks where the steady rate starts.

    Defined here because TrainerCallback comes from transformers, which must not be imported
    before the engine is chosen."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        started = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # Every process ends every step, so the collective in totals() lines up.
            if state.max_steps >= STEADY_MIN_STEPS and state.global_step == state.max_steps // 5:
                counter.mark = (counter.totals(args.device)[0], time.perf_counter())

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            if not logs or "loss" not in logs:
                return  # the end-of-training summary and eval logs carry no step loss
            loss = float(logs["loss"])
            tokens, _ = counter.totals(args.device)  # every process logs at the same steps
            if on_log is not None:
                on_log(state.global_step, state.max_steps, loss, tokens, time.perf_counter() - self.started)

    return _Progress()


# ---------------------------------------------------------------------------------------------
# Loading the model: one function per engine


def _absolute(model: str) -> str:
    """A local model as an absolute path: a relative 'models/x' reads as a Hub id to the loaders."""
    path = Path(model)
    return str(path.resolve()) if path.is_dir() else model


def _model_dtype(spec: RunSpec, settings: Settings) -> Any:
    """Weights in the compute precision (16-bit on GPU, as the estimator assumes), except a full
    fp16 fine-tune, whose gradient scaler needs fp32 weights."""
    import torch

    if settings.precision == "fp16" and spec.method.type == "full":
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[settings.precision]


def _config(spec: RunSpec, model: str) -> Any:
    """The model's config alone (no weights): what the attention route is chosen by."""
    from transformers import AutoConfig

    local = Path(model).is_dir()
    return AutoConfig.from_pretrained(
        model, revision=None if local else spec.model.revision, local_files_only=local, trust_remote_code=spec.model.trust_remote_code
    )


def _load_trl(
    spec: RunSpec, model: str, settings: Settings, attn_implementation: str | None = None, *, adapters: bool = True
) -> PreTrainedModel | PeftModel:
    """transformers + PEFT: the base model, 4-bit for qlora, with LoRA adapters unless full (or
    unless `adapters` is False: a preference trainer wraps the model in them itself); attending
    with `attn_implementation` (packed_attention.for_trl; None: transformers' default)."""
    from transformers import AutoModelForCausalLM

    local = Path(model).is_dir()
    dtype = _model_dtype(spec, settings)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "revision": None if local else spec.model.revision,
        "local_files_only": local,
        "trust_remote_code": spec.model.trust_remote_code,
    }
    if spec.method.type == "qlora":
        import torch

        kwargs["quantization_config"] = qlora_quantization(dtype)
        # 4-bit weights are placed as they load: on this process's own GPU under DDP.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))}
    if attn_implementation == packed_attention.VARLEN:
        from tuneform.train import varlen_attention

        varlen_attention.register().reset()  # counts from here what the model's attention calls run
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        try:
            loaded = AutoModelForCausalLM.from_pretrained(model, **kwargs)
        except ValueError:
            if attn_implementation != "flex_attention":
                raise
            # A model class without FlexAttention gets transformers' default (the record says which).
            loaded = AutoModelForCausalLM.from_pretrained(model, **{k: v for k, v in kwargs.items() if k != "attn_implementation"})
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load model {model}: {exc}") from exc
    if spec.method.type == "full" or not adapters:
        return loaded

    from peft import get_peft_model, prepare_model_for_kbit_training

    if spec.method.type == "qlora":
        loaded = prepare_model_for_kbit_training(loaded, use_gradient_checkpointing=settings.gradient_checkpointing)
    return get_peft_model(loaded, lora_config(spec))


def _load_unsloth(spec: RunSpec, model: str, settings: Settings) -> tuple[PreTrainedModel, Settings]:
    """Unsloth: the same model and adapters through FastLanguageModel (CUDA only; the GPU tests
    cover it). With nothing compiled, LFM2's layers go through Unsloth's fused kernels
    (train/fused_lfm2.py), recorded in the settings."""
    from unsloth import FastLanguageModel

    local = Path(model).is_dir()
    loaded, _ = FastLanguageModel.from_pretrained(
        model_name=model,
        max_seq_length=spec.model.max_seq_length,
        dtype=_model_dtype(spec, settings),
        load_in_4bit=spec.model.load_in_4bit,
        load_in_8bit=False,
        full_finetuning=spec.method.type == "full",
        revision=None if local else spec.model.revision,
        local_files_only=local,
        trust_remote_code=spec.model.trust_remote_code,
        use_exact_model_name=True,  # no swap to a pre-quantised repo: the run key names this model
        use_gradient_checkpointing="unsloth" if settings.gradient_checkpointing else False,
        random_state=spec.training.seed,
    )
    if spec.method.type == "full":
        return loaded, settings
    m = spec.method
    adapted = FastLanguageModel.get_peft_model(
        loaded,
        r=m.r,
        lora_alpha=m.alpha,
        lora_dropout=m.dropout,
        # Unsloth's Llama path iterates the list; it would iterate the letters of "all-linear".
        target_modules=_linear_layer_names(loaded) if m.target_modules == "all-linear" else m.target_modules,
        use_rslora=bool(m.use_rslora),
        bias="none",
        use_gradient_checkpointing="unsloth" if settings.gradient_checkpointing else False,
        random_state=spec.training.seed,
    )
    if settings.compile == "none" and fused_lfm2.enable(adapted):
        settings = replace(settings, kernels="fused")
    return adapted, settings


def qlora_quantization(compute_dtype: Any) -> Any:
    """The 4-bit NF4 weights QLoRA trains on (double-quantised constants), computing in `compute_dtype`.
    Scoring a QLoRA run loads its models the same way (evals/runner.py load_for_eval)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype
    )


def _linear_layer_names(model: PreTrainedModel) -> list[str]:
    """PEFT's 'all-linear' spelled out: every linear layer's name except the output head's."""
    import torch

    head = model.get_output_embeddings()
    return sorted(
        {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and module is not head}
    )


# ---------------------------------------------------------------------------------------------
# Saving


def save(trainer: SFTTrainer, tokenizer: PreTrainedTokenizerBase, spec: RunSpec, settings: Settings, out_dir: Path) -> None:
    """Write what `output.save` asks for, each with the tokenizer (and the chat template it
    trained with): the adapter, merged weights, GGUF files (train/export.py lays them out)."""
    from tuneform.train.export import write_exports

    model: Any = trainer.model  # a PEFT or Unsloth wrapper: its save methods are not in torch's types
    write_exports(model, tokenizer, spec, settings.engine, out_dir)


def library_versions(settings: Settings, spec: RunSpec) -> dict[str, str]:
    """Versions of the libraries that trained, for the manifest."""
    names = list(LIBRARIES)
    if settings.engine == "unsloth":
        names += ["unsloth", "unsloth_zoo"]
    if spec.method.type == "qlora":
        names.append("bitsandbytes")
    return installed_versions(names)


def installed_versions(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Installed version of each named distribution; the ones not installed are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
