"""Score a model on eval suites and held-out data: the job's eval step, on CPU or GPU.

This is the only evals module that imports torch and transformers; plan, validate and
`tuneform score` never load it. Generation (here) and scoring (score.py) stay separate, so the
predictions this module produces can be re-scored anywhere without a model.

Choices that decide the numbers, and why:

- Greedy decoding, with the model's own repetition penalty and n-gram blocking switched off: a
  suite promises "greedy", so a score depends only on the weights and the suite, never on sampling
  settings a model repo happens to ship.
- Batches are left-padded by hand (pad ids on the left, attention mask zero there) instead of
  flipping `tokenizer.padding_side`, so a tokenizer shared with the trainer is never mutated. Rows
  are batched longest first (an out-of-memory shows up in the first batch, not the last). Tests
  check that batched and one-by-one generation agree in fp32; in bf16 on a GPU, kernels picked per
  batch shape can still flip a near-tie, so score base, previous and new with one batch size.
- Held-out loss is the mean negative log-likelihood per trained token (mask 1) over all examples
  pooled, not a mean of per-example means, so long answers weigh what their tokens weigh: the
  same quantity the trainer's eval loss reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tuneform.core.errors import TuneformError
from tuneform.evals.metrics import LOSS_METRICS, PREFERENCE_METRICS, perplexity_from_loss, run_metrics
from tuneform.evals.score import ScoreReport, score_predictions
from tuneform.evals.suite import GateError, GateResult, Suite, SuiteRow, check_gates

if TYPE_CHECKING:
    from peft import PeftModel

# What gets scored: a transformers causal LM, or a PEFT model wrapping one (an unmerged adapter).
CausalLM: TypeAlias = "PreTrainedModel | PeftModel"

# (input_ids, mask) of one tokenised held-out example; mask[i] == 1 when token i is trained.
Example = tuple[Sequence[int], Sequence[int]]


class EvalError(TuneformError, ValueError):
    """The model cannot be scored as the run and suites are written (a chat row without a chat
    template, held-out rows with nothing trained, two suites with one name, 4-bit without CUDA)."""


RUN_METRICS = run_metrics(preference=True)
"""Metrics of the run rather than of a suite: a gate names them bare in any eval entry."""

# (prompt_ids, chosen_ids, rejected_ids) of one tokenised held-out preference pair.
Pair = tuple[Sequence[int], Sequence[int], Sequence[int]]


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off while scoring a model that may have just been training; its mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _prompt_ids(row: SuiteRow, tokenizer: PreTrainedTokenizerBase, chat_template: str | None) -> list[int]:
    """Token ids of a row's model input, ending where the answer starts.

    Text rendered by a chat template already holds the special tokens the template writes (BOS,
    turn markers), so it is tokenised without adding more; a raw prompt gets the tokenizer's own.
    """
    has_template = chat_template is not None or tokenizer.chat_template is not None
    if row.messages is not None:
        if not has_template:
            raise EvalError(
                f"suite row '{row.id}' (line {row.line}) is a chat (messages) but the tokenizer has no chat template: "
                "give the run a chat template or write the row as a prompt"
            )
        messages = row.messages
    elif has_template:
        messages = [{"role": "user", "content": row.prompt or ""}]
    else:
        return list(tokenizer(row.prompt or "", add_special_tokens=True)["input_ids"])
    text = tokenizer.apply_chat_template(messages, chat_template=chat_template, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _eos_ids(model: CausalLM, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-sequence ids of the model's generation config plus the tokenizer's end-of-turn token."""
    configured = model.generation_config.eos_token_id
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _pad_id(model: CausalLM, tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, model.generation_config.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string (stop strings are not part of the answer)."""
    end = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:end].strip()


def generate_predictions(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    suite: Suite,
    *,
    batch_size: int = 16,
    chat_template: str | None = None,
) -> dict[str, str]:
    """Greedy generations for every row of `suite`, keyed by row id, ready for `score_predictions`.

    Rows given as `messages` are rendered with the chat template (`chat_template`, else the
    tokenizer's) and the generation prompt; `prompt` rows become one user message when there is a
    template, else stay raw text. Only new tokens are decoded (special tokens skipped), cut at the
    suite's first stop string and stripped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    generation = suite.spec.generation
    encoded = sorted(((row.id, _prompt_ids(row, tokenizer, chat_template)) for row in suite.rows), key=lambda item: -len(item[1]))
    pad = _pad_id(model, tokenizer)
    settings: dict[str, Any] = {
        "max_new_tokens": generation.max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "pad_token_id": pad,
        "eos_token_id": _eos_ids(model, tokenizer),
        "use_cache": True,
    }
    if generation.stop:
        # Ends a sequence early once a stop string is generated; the text is still cut below,
        # because the criterion fires after the token that completes the string.
        settings.update(stop_strings=list(generation.stop), tokenizer=tokenizer)
    device = _device(model)
    predictions: dict[str, str] = {}
    with _eval_mode(model):
        for start in range(0, len(encoded), batch_size):
            batch = encoded[start : start + batch_size]
            width = max(len(ids) for _, ids in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for i, (_, ids) in enumerate(batch):
                input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[i, width - len(ids) :] = 1
            # torch's stubs type a Module's attributes as Tensor; generate comes from transformers.
            output = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **settings)  # type: ignore[operator]
            texts = tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
            for (row_id, _), text in zip(batch, texts):
                predictions[row_id] = _cut_at_stop(text, generation.stop)
    return predictions


# Logit values one held-out batch may hold (rows x width x vocabulary): 2^28 is 512 MiB in bf16.
# A 128k vocabulary at 2,048 tokens is 263M a row, so long rows are scored one at a time: an 8B
# QLoRA job on a 24 GB card trains, and its batch-of-8 logits (4 GiB) did not fit beside the model.
LOGITS_BUDGET = 2**28


def heldout_loss(model: CausalLM, examples: Sequence[Example], *, batch_size: int = 8) -> float:
    """Mean negative log-likelihood (natural log) per trained token of tokenised held-out examples.

    Each example is (input_ids, mask) as the trainer saw it; token i counts when mask[i] is 1 and
    i > 0 (the first token has nothing to be predicted from). Examples are right-padded, so padding
    never sits before a real token and needs no position fix-up. A batch holds at most `batch_size`
    rows, and fewer when their logits would pass LOGITS_BUDGET.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for n, (ids, mask) in enumerate(examples):
        if len(ids) != len(mask):
            raise ValueError(f"held-out example {n}: {len(ids)} input ids but {len(mask)} mask values")
    ordered = [example for example in sorted(examples, key=lambda example: -len(example[0])) if example[0]]
    device = _device(model)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    total, count = 0.0, 0
    with _eval_mode(model):
        for batch in _loss_batches(ordered, batch_size, vocab):
            width = len(batch[0][0])  # the longest: rows are sorted longest first
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for i, (ids, mask) in enumerate(batch):
                row = torch.tensor(list(ids), dtype=torch.long)
                input_ids[i, : len(ids)] = row
                attention[i, : len(ids)] = 1
                labels[i, : len(ids)] = torch.where(torch.tensor(list(mask), dtype=torch.bool), row, -100)
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            targets = labels[:, 1:].to(device)
            scored = targets != -100
            if scored.any():
                total += F.cross_entropy(logits[:, :-1][scored].float(), targets[scored], reduction="sum").item()
                count += int(scored.sum().item())
    if count == 0:
        raise EvalError("held-out examples have no trained tokens (every mask value is 0 or examples are empty)")
    return total / count


def pair_log_probs(model: CausalLM, pairs: Sequence[Pair], *, batch_size: int = 8) -> list[tuple[float, float]]:
    """Summed log-probability of each pair's chosen and of its rejected answer tokens after its
    prompt: the quantities DPO's implicit reward is made of. Sequences are scored as
    `heldout_loss` scores them (right-padded, longest first, within LOGITS_BUDGET)."""
    sequences: list[tuple[int, list[int], int]] = []  # (index, ids, where the answer starts)
    for n, (prompt, chosen, rejected) in enumerate(pairs):
        sequences += [(2 * n, [*prompt, *chosen], len(prompt)), (2 * n + 1, [*prompt, *rejected], len(prompt))]
    ordered = sorted(sequences, key=lambda item: -len(item[1]))
    device = _device(model)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    sums = [0.0] * len(sequences)
    with _eval_mode(model):
        start = 0
        while start < len(ordered):
            rows = max(1, min(batch_size, LOGITS_BUDGET // (len(ordered[start][1]) * vocab)))
            batch, start = ordered[start : start + rows], start + rows
            width = len(batch[0][1])
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            scored = torch.zeros((len(batch), width), dtype=torch.bool)
            for i, (_, ids, answer_start) in enumerate(batch):
                input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention[i, : len(ids)] = 1
                scored[i, max(1, answer_start) : len(ids)] = True  # the first token has nothing to be predicted from
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits[:, :-1].float()
            targets = input_ids[:, 1:].to(device)
            token_logps = torch.gather(F.log_softmax(logits, dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)
            totals = (token_logps * scored[:, 1:].to(device)).sum(dim=1)
            for (index, _, _), total in zip(batch, totals.tolist()):
                sums[index] = total
    return [(sums[2 * n], sums[2 * n + 1]) for n in range(len(pairs))]


def preference_metrics(policy: Sequence[tuple[float, float]], reference: Sequence[tuple[float, float]], beta: float) -> dict[str, float]:
    """Held-out preference metrics of a policy against the model it started from (DPO's implicit
    reward r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))): `reward_accuracy`, the fraction of
    pairs whose chosen answer gets the higher reward (a tie counts as wrong), and `reward_margin`,
    the mean of chosen minus rejected reward."""
    if len(policy) != len(reference) or not policy:
        raise EvalError(f"preference metrics need the same held-out pairs for both models ({len(policy)} and {len(reference)} given)")
    margins = [beta * ((c - ref_c) - (r - ref_r)) for (c, r), (ref_c, ref_r) in zip(policy, reference)]
    return {"reward_accuracy": sum(m > 0 for m in margins) / len(margins), "reward_margin": math.fsum(margins) / len(margins)}


@dataclass(frozen=True)
class SuiteScores:
    """A suite and its ScoreReport for one model (the suite supplies each row's expected answer)."""

    suite: Suite
    report: ScoreReport


@dataclass(frozen=True)
class ModelScores:
    """One model's evaluation: its scores per suite (by suite name, run-file order) and held-out loss.

    `eval_loss` and `perplexity` are None when there was no held-out data (eval_split: 0).
    `pair_logps` (a preference run's held-out pairs: chosen and rejected log-probabilities) are
    what `compare` turns into reward metrics against the base model.
    """

    suites: dict[str, SuiteScores]
    eval_loss: float | None = None
    perplexity: float | None = None
    pair_logps: list[tuple[float, float]] | None = None

    def metrics(self, *, qualified: bool | None = None) -> dict[str, float]:
        """Flat metric values: `<metric>` with one suite, `<suite>/<metric>` with several, then the loss.

        `qualified` forces either form (compare uses it so that all three models key alike).
        """
        if qualified is None:
            qualified = len(self.suites) > 1
        out = {
            f"{name}/{metric}" if qualified else metric: value
            for name, scores in self.suites.items()
            for metric, value in scores.report.metrics.items()
        }
        if self.eval_loss is not None and self.perplexity is not None:
            out.update(eval_loss=self.eval_loss, perplexity=self.perplexity)
        return out

    def as_json(self) -> dict[str, Any]:
        """Plain data: every suite's report (predictions included) and the loss, JSON-safe."""
        out: dict[str, Any] = {
            "suites": {name: scores.report.to_json() for name, scores in self.suites.items()},
            "eval_loss": json_number(self.eval_loss),
            "perplexity": json_number(self.perplexity),
        }
        if self.pair_logps is not None:
            out["pair_logps"] = [[json_number(c), json_number(r)] for c, r in self.pair_logps]
        return out


def json_number(value: float | None) -> float | str | None:
    """A float as JSON can hold it: inf, -inf and nan become strings (a diverged run still reports)."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def _loss_batches(ordered: list[Example], batch_size: int, vocab: int) -> Iterator[list[Example]]:
    """Consecutive batches of longest-first examples within `batch_size` rows and LOGITS_BUDGET."""
    start = 0
    while start < len(ordered):
        rows = max(1, min(batch_size, LOGITS_BUDGET // (len(ordered[start][0]) * vocab)))
        yield ordered[start : start + rows]
        start += rows


def score_model(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    suites: Sequence[Suite],
    heldout: Sequence[Example] | None,
    *,
    batch_size: int = 16,
    loss_batch_size: int = 8,
    chat_template: str | None = None,
    pairs: Sequence[Pair] | None = None,
) -> ModelScores:
    """Generate and score every suite, and measure held-out loss and perplexity when data is given,
    and the log-probabilities of held-out preference `pairs` when given.

    A NaN held-out loss (a diverged model) is reported with a NaN perplexity rather than raised,
    so the run finishes, fails its loss gates and still publishes its report.
    """
    names = [suite.name for suite in suites]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise EvalError(f"two eval suites are both named {', '.join(repeated)}: give each suite a unique name")
    reports = {
        suite.name: SuiteScores(
            suite,
            score_predictions(suite, generate_predictions(model, tokenizer, suite, batch_size=batch_size, chat_template=chat_template)),
        )
        for suite in suites
    }
    pair_logps = pair_log_probs(model, pairs, batch_size=loss_batch_size) if pairs else None
    if not heldout:
        return ModelScores(reports, pair_logps=pair_logps)
    loss = heldout_loss(model, heldout, batch_size=loss_batch_size)
    return ModelScores(reports, loss, math.nan if math.isnan(loss) else perplexity_from_loss(loss), pair_logps)


@dataclass(frozen=True)
class EvalRow:
    """One metric across the three models; a model that lacks the metric has None."""

    metric: str
    better: Literal["higher", "lower"]
    base: float | None
    previous: float | None
    new: float | None

    @property
    def delta_base(self) -> float | None:
        """new - base (None when either is missing)."""
        return None if self.new is None or self.base is None else self.new - self.base

    @property
    def delta_previous(self) -> float | None:
        """new - previous (None without a previous version)."""
        return None if self.new is None or self.previous is None else self.new - self.previous

    def as_json(self) -> dict[str, Any]:
        """Plain data, deltas included, so renderers need no arithmetic."""
        return {
            "metric": self.metric,
            "better": self.better,
            "base": json_number(self.base),
            "previous": json_number(self.previous),
            "new": json_number(self.new),
            "delta_base": json_number(self.delta_base),
            "delta_previous": json_number(self.delta_previous),
        }


@dataclass(frozen=True)
class Miss:
    """A suite row the new model got wrong (some metric below 1), with the base model's answer."""

    suite: str
    id: str
    expected: Any
    prediction: str | None
    base_prediction: str | None
    scores: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        """Plain data for the manifest."""
        return {
            "suite": self.suite,
            "id": self.id,
            "expected": self.expected,
            "prediction": self.prediction,
            "base_prediction": self.base_prediction,
            "scores": self.scores,
        }


@dataclass(frozen=True)
class EvalTable:
    """Base / previous / new per metric, the new model's gate verdicts, and rows it missed."""

    rows: list[EvalRow]
    gates: list[GateResult]
    misses: list[Miss]

    @property
    def passed(self) -> bool:
        """True when every gate passed (no gates: True)."""
        return all(gate.passed for gate in self.gates)

    def gates_json(self) -> list[dict[str, Any]]:
        """Gate verdicts as plain data: metric, op, threshold, condition ('>= 0.85'), value, passed."""
        return [
            {
                "metric": g.metric,
                "op": g.gate.op,
                "threshold": g.gate.threshold,
                "condition": str(g.gate),
                "value": json_number(g.value),
                "passed": g.passed,
            }
            for g in self.gates
        ]

    def as_json(self) -> dict[str, Any]:
        """The manifest's `evals.table`: rows (with deltas), gates, passed, misses."""
        return {
            "rows": [row.as_json() for row in self.rows],
            "gates": self.gates_json(),
            "passed": self.passed,
            "misses": [miss.as_json() for miss in self.misses],
        }


def _resolve_gate(name: str, owners: Mapping[str, list[str]], suites: Sequence[str], qualified: bool) -> str:
    """The table key a gate's metric name refers to (the rule is in `compare`'s docstring)."""
    suite, _, metric = name.rpartition("/")
    if suite in owners.get(metric, []) or (suite in suites and metric in RUN_METRICS):
        return name if qualified and metric not in RUN_METRICS else metric
    defined_by = owners.get(name, [])
    if len(defined_by) > 1:
        raise GateError(f"gate on '{name}' is ambiguous: suites {', '.join(defined_by)} all measure it; write '{defined_by[0]}/{name}'")
    if defined_by and qualified:
        return f"{defined_by[0]}/{name}"
    return name


def _misses(new: ModelScores, base: ModelScores, limit: int) -> list[Miss]:
    """Up to `limit` rows per suite where some metric of the new model scored below 1, in file order."""
    out: list[Miss] = []
    for name, scores in new.suites.items():
        expected = {row.id: row.expected for row in scores.suite.rows}
        base_predictions = {row.id: row.prediction for row in base.suites[name].report.rows} if name in base.suites else {}
        missed = [row for row in scores.report.rows if any(value < 1 for value in row.scores.values())]
        out += [Miss(name, row.id, expected[row.id], row.prediction, base_predictions.get(row.id), row.scores) for row in missed[:limit]]
    return out


def compare(
    base: ModelScores,
    previous: ModelScores | None,
    new: ModelScores,
    gates: Mapping[str, str] | None = None,
    *,
    misses: int = 5,
    beta: float | None = None,
) -> EvalTable:
    """The before -> after table of a run, and the new model's gate verdicts.

    Metric keys are bare (`exact_match`) when one suite is involved and `<suite>/<metric>` when
    several are; `eval_loss` and `perplexity` are always bare (one held-out set per run). A gate
    may name a metric either way: `<suite>/<metric>` always works, a bare name works when exactly
    one suite measures it (else GateError says which to write), and `<suite>/eval_loss` means
    `eval_loss`, so a job can prefix every gate of a run file's eval entry with its suite name.
    Gates go through `check_gates`, so a gate on a metric the new model lacks is a GateError.

    With `beta` (a preference run) and held-out pairs scored for every model, the previous and new
    models get `reward_accuracy` and `reward_margin` against the base model, the reference the run
    trained against (the base's own rewards are zero, so it has none); run-level like the loss.
    """
    models = [base, new] + ([previous] if previous is not None else [])
    names = list(dict.fromkeys(name for model in models for name in model.suites))
    qualified = len(names) > 1
    flat = [model.metrics(qualified=qualified) for model in (base, previous, new) if model is not None]
    keys = list(dict.fromkeys(key for values in (flat[-1], *flat[:-1]) for key in values))
    if beta is not None and base.pair_logps is not None:
        reference = base.pair_logps
        for model, values in zip((previous, new), (flat[1] if previous is not None else {}, flat[-1])):
            if model is not None and model.pair_logps is not None:
                values.update(preference_metrics(model.pair_logps, reference, beta))
        keys += [key for key in PREFERENCE_METRICS if key in flat[-1] and key not in keys]
    base_values, new_values = flat[0], flat[-1]
    previous_values = flat[1] if previous is not None else {}
    rows = [
        EvalRow(
            metric=key,
            better="lower" if key in LOSS_METRICS else "higher",
            base=base_values.get(key),
            previous=previous_values.get(key),
            new=new_values.get(key),
        )
        for key in keys
    ]
    owners: dict[str, list[str]] = {}
    for model in models:
        for name, scores in model.suites.items():
            for metric in scores.report.metrics:
                if name not in owners.setdefault(metric, []):
                    owners[metric].append(name)
    resolved: dict[str, str] = {}
    for name, condition in (gates or {}).items():
        key = _resolve_gate(name, owners, names, qualified)
        if key in resolved:
            raise GateError(f"two gates on '{key}': keep one")
        resolved[key] = condition
    return EvalTable(rows, check_gates(resolved, new_values), _misses(new, base, misses))


def load_for_eval(
    path: str | Path,
    *,
    base: str | Path | None = None,
    revision: str | None = None,
    device: str | None = None,
    four_bit: bool = False,
) -> tuple[CausalLM, PreTrainedTokenizerBase]:
    """Load a model (a folder or Hub id) or a PEFT adapter folder, ready for scoring.

    An adapter folder (one with adapter_config.json) is applied to `base` (a Hub id or a folder),
    by default the base its config names (which may be a path on the machine that trained, hence
    `base`); the adapter is kept unmerged so the numbers are those of the artifact that ships.
    `revision` pins whichever model comes from the Hub: the base, or `path` itself. The tokenizer comes from `path` when the
    version saved one (training may add a chat template), else from the base. Weights are fp32 on
    CPU, where bf16 matmuls are slow and inexact, and bf16 on a GPU, the precision training used.
    `four_bit` loads the weights as QLoRA trained on them (NF4, computing in bf16; CUDA only): a
    QLoRA run's adapter is scored on the base it was trained against, in the memory it trained in.
    Remote code is never trusted.
    """
    folder = Path(path)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float32 if target.type == "cpu" else torch.bfloat16
    quantized: dict[str, Any] = {}
    if four_bit:
        if target.type != "cuda":
            raise EvalError("four_bit scoring needs a CUDA GPU (bitsandbytes 4-bit kernels)")
        from tuneform.train.engine import qlora_quantization

        quantized = {"quantization_config": qlora_quantization(dtype), "device_map": {"": target.index or 0}}
    placement: dict[str, Any] = quantized or {"device_map": str(target)}
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        from peft import PeftModel

        base_id = str(base or json.loads(adapter_config.read_text())["base_model_name_or_path"])
        base_model = AutoModelForCausalLM.from_pretrained(base_id, revision=revision, dtype=dtype, trust_remote_code=False, **placement)
        model: CausalLM = PeftModel.from_pretrained(base_model, str(folder))
        has_tokenizer = any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder) if has_tokenizer else base_id, revision=None if has_tokenizer else revision, trust_remote_code=False
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), revision=revision, dtype=dtype, trust_remote_code=False, **placement)
        tokenizer = AutoTokenizer.from_pretrained(str(path), revision=revision, trust_remote_code=False)
    model.eval()
    return model, tokenizer
