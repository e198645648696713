"""Preference training (method.type dpo): TRL's DPOTrainer fed tuneform's tokens.

The policy is the run's LoRA adapter; the reference is the same model with the adapter switched
off, so no second copy of the model is loaded. TRL does exactly this when it is given the base
model and a LoRA config (`peft_config`): it wraps the model itself and computes the reference
log-probabilities under `disable_adapter`. Unsloth's engine hands TRL a model it has already
wrapped; TRL then keeps a frozen copy of the fresh adapter as the reference, which equals the base
model because a fresh LoRA adapter adds nothing (its B matrices start at zero).

Rows are rendered and tokenised by train/format.py (`tokenize_pair`), the same rendering the SFT
path trains and the job's scoring prompts with, so TRL's own tokenisation is bypassed
(`_prepare_dataset`): what trains is exactly what `tuneform preview` shows.

orpo and kto are in the run-file contract but not trained yet: ORPO lives in TRL's experimental
package and KTO learns from unpaired, labelled answers; `check_runnable` refuses both with a fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneform.data.reader import Example
from tuneform.runfile.spec import PREFERENCE_METHODS, RunSpec
from tuneform.train.format import TokenizedPair, tokenize_pair

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase
    from trl import DPOConfig

TRAINED_METHODS = ("dpo",)
"""Preference methods this tuneform trains."""


def untrained(spec: RunSpec) -> str | None:
    """Why a preference method in the run-file contract cannot train here yet (None when it can):
    the plan reports it, and the job refuses it before loading anything."""
    method = spec.method.type
    if method in PREFERENCE_METHODS and method not in TRAINED_METHODS:
        return (
            f"method {method} is not trained by this tuneform yet (it trains {', '.join(TRAINED_METHODS)}): "
            "set method.type: dpo, which learns from the same {prompt, chosen, rejected} rows"
        )
    return None


DPO_LOSS = "sigmoid"
"""The DPO paper's loss, -log sigmoid(beta * (chosen log-ratio - rejected log-ratio))."""


def tokenize_pairs(examples: list[Example], tokenizer: PreTrainedTokenizerBase, spec: RunSpec) -> tuple[list[TokenizedPair], int]:
    """Tokenised pairs that keep a token of both answers after truncation, and how many did not."""
    pairs = [tokenize_pair(e, tokenizer, max_seq_length=spec.model.max_seq_length) for e in examples]
    kept = [pair for pair in pairs if pair.trainable]
    return kept, len(pairs) - len(kept)


def pair_dataset(pairs: list[TokenizedPair]) -> Dataset:
    """The columns TRL's preference collator reads: prompt, chosen and rejected token ids."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt_ids": [p.prompt_ids for p in pairs],
            "chosen_ids": [p.chosen_ids for p in pairs],
            "rejected_ids": [p.rejected_ids for p in pairs],
        }
    )


def dpo_config(spec: RunSpec, shared: dict[str, Any]) -> DPOConfig:
    """DPO's arguments: the ones every tuneform trainer shares, beta from the run file, and the
    reference's log-probabilities computed alongside the policy, or once before training when the
    run file asks (method.precompute_ref_log_probs, priced so by the estimator)."""
    from trl import DPOConfig

    assert spec.method.beta is not None, "MethodSpec fills beta for preference methods"
    return DPOConfig(
        **shared,
        beta=spec.method.beta,
        precompute_ref_log_probs=bool(spec.method.precompute_ref_log_probs),
        sync_ref_model=False,
        disable_dropout=True,  # TRL's default, written out: dropout would make policy and reference disagree on equal weights
        use_weighting=False,
        label_smoothing=0.0,
    )


def dpo_trainer(
    model: Any,
    args: DPOConfig,
    tokenizer: PreTrainedTokenizerBase,
    train_pairs: list[TokenizedPair],
    eval_pairs: list[TokenizedPair],
    *,
    peft_config: Any,
    callbacks: list[Any],
) -> Any:
    """TRL's DPOTrainer (Unsloth's patched one when Unsloth was imported first) on tuneform's tokens.

    `peft_config` is the run's LoRA config when `model` is the bare base model (TRL wraps it and
    the reference is the adapter switched off), None when the engine wrapped it already.
    """
    from trl import DPOTrainer

    class _TokenizedDPOTrainer(DPOTrainer):
        """Takes rows tokenised by tuneform as they are (TRL would render and tokenise them again)."""

        def _prepare_dataset(self, dataset: Dataset, processing_class: Any, args: Any, dataset_name: str) -> Dataset:
            return dataset

    return _TokenizedDPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=pair_dataset(train_pairs),
        eval_dataset=pair_dataset(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
