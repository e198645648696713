"""Run keys published before a schema change keep their value after it.

A version on the Hub is found by its run key; if adding a field (beta, report_to, a list form of
output.save) changed the canonical form of run files that do not use it, every existing run would
plan as new and retrain, and reverts would find nothing. The keys below were computed on main
before preference training was added (commit 305169c) and must never change; a deliberate change
of what a run trains bumps TRAINING_FORMAT instead, and then this file with it.
"""

from __future__ import annotations

import pytest

from tuneform.runfile.spec import Resolved, load_run_text, run_key

RESOLVED = Resolved("c" * 40, None, ({"sha256": "d" * 64},))

PUBLISHED = {
    "model: {id: Qwen/Qwen3-0.6B}\ndata: {train: [{path: data/train.jsonl}]}\n": (
        "905d57491361dd0e3a2e017bcd25c066314d288d4de6d8d700ed35c86a0ba52e"
    ),
    (
        "model: {id: Qwen/Qwen3-0.6B}\ndata: {train: [{path: data/train.jsonl}]}\nmethod: {type: full}\n"
        "training: {learning_rate: 0.00002, num_train_epochs: 2}\n"
    ): "59a5ae9f9fb91e8e8b2b4ab9513c33a273885f739cde960f66836e82984c5b9a",
    (
        "model: {id: Qwen/Qwen3-0.6B}\ndata: {train: [{path: data/train.jsonl, format: prompt_completion}]}\noutput: {save: merged}\n"
    ): "63a8b4639d0d999d29bee689c961fceb3bb81d0cd84abbe1427bddd6b006adf8",
}


@pytest.mark.parametrize("text", list(PUBLISHED))
def test_published_run_keys_do_not_move(text: str) -> None:
    spec = load_run_text(text, "runs/probe.yaml").spec
    assert run_key(spec, RESOLVED) == PUBLISHED[text]


def test_a_new_field_enters_the_key_once_set() -> None:
    base = "model: {id: Qwen/Qwen3-0.6B}\ndata: {train: [{path: data/train.jsonl, format: preference}]}\n"
    default = load_run_text(base + "method: {type: dpo}\n", "runs/a.yaml").spec
    stronger = load_run_text(base + "method: {type: dpo, beta: 0.5}\n", "runs/a.yaml").spec
    assert run_key(default, RESOLVED) != run_key(stronger, RESOLVED)
