"""Preference rows ({prompt, chosen, rejected}) are read like every other format: each row checked,
bad ones reported by file and line with the fix; and only preference methods train on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneform.data.reader import DataError, load_data
from tuneform.runfile.spec import load_run_text

DPO = "model: {id: Qwen/Qwen3-0.6B}\ndata: {train: [{path: data/pairs.jsonl, format: preference}], eval_split: 0.01}\nmethod: {type: dpo}\n"


def write(tmp_path: Path, rows: list[object]) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_strings_and_message_lists_become_a_prompt_and_two_answers(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
    ]
    spec = load_run_text(DPO, "runs/dpo.yaml").spec
    assert spec is not None
    loaded = load_data(spec, write(tmp_path, rows))
    by_row = {e.row: e for e in loaded.train + loaded.eval}
    first, second = by_row[1], by_row[2]
    assert first.messages == [{"role": "user", "content": "Capital of France?"}] and first.prompt_turns == 1
    assert first.chosen == [{"role": "assistant", "content": "Paris."}]
    assert first.rejected == [{"role": "assistant", "content": "Lyon."}]
    assert first.is_preference
    assert second.prompt_turns == 2 and second.messages is not None and second.messages[0]["role"] == "system"
    assert second.chosen == [{"role": "assistant", "content": "4"}]


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "q", "rejected": "no"}, "chosen", "missing"),
        ({"prompt": "q", "chosen": "", "rejected": "no"}, "chosen", "empty"),
        ({"prompt": "q", "chosen": "yes", "rejected": [{"role": "user", "content": "hm"}]}, "rejected", "no assistant"),
        (
            {"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "rejected": "no"},
            "chosen",
            "does not end with an assistant",
        ),
        ({"prompt": 7, "chosen": "yes", "rejected": "no"}, "prompt", "not a number"),
    ],
)
def test_a_bad_row_is_named_by_line_and_field_with_the_fix(tmp_path: Path, row: dict[str, object], field: str, words: str) -> None:
    good = {"prompt": "q", "chosen": "yes", "rejected": "no"}
    spec = load_run_text(DPO.replace("eval_split: 0.01", "eval_split: 0.01, max_bad_rows: 0"), "runs/dpo.yaml").spec
    assert spec is not None
    with pytest.raises(DataError) as caught:
        load_data(spec, write(tmp_path, [good, good, row]))
    message = str(caught.value)
    assert f"data/pairs.jsonl line 3: {field}" in message
    assert words in message


def only_problem(text: str) -> tuple[str | None, str]:
    loaded = load_run_text(text, "runs/dpo.yaml")
    assert loaded.spec is None and len(loaded.problems) == 1
    return loaded.problems[0].field, loaded.problems[0].message


def test_preference_methods_and_preference_rows_go_together() -> None:
    field, message = only_problem(DPO.replace(", format: preference", ""))
    assert field == "data.train[0].format" and "format: preference" in message and "method dpo" in message
    field, message = only_problem(DPO.replace("method: {type: dpo}\n", ""))
    assert field == "data.train[0].format" and "set method.type: dpo" in message
    field, message = only_problem(DPO.replace("method: {type: dpo}", "method: {type: lora, beta: 0.2}").replace(", format: preference", ""))
    assert field == "method.beta" and "beta only applies" in message
    spec = load_run_text(DPO, "runs/dpo.yaml").spec
    assert spec is not None and spec.method.beta == 0.1 and spec.method.r == 16  # LoRA adapters under the preference objective
