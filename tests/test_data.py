"""load_data on real files in a temp repo: every format and file type, bad rows, split, sampling."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneform.data.reader import DataError, load_data
from tuneform.runfile.spec import RunSpec


def chat(i: int, answer: str = "billing") -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Classify."},
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": answer},
        ]
    }


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path.name


def make_spec(train: list[dict[str, Any]], **data: Any) -> RunSpec:
    training = data.pop("training", {"seed": 7})
    return RunSpec.model_validate({"model": {"id": "./models/demo-tiny"}, "data": {"train": train, **data}, "training": training})


def test_messages_jsonl_split_is_deterministic(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data/chat.jsonl", [chat(i) for i in range(40)])
    spec = make_spec([{"path": "data/chat.jsonl"}], eval_split=0.1)
    first, again = load_data(spec, tmp_path), load_data(spec, tmp_path)
    assert (len(first.train), len(first.eval), first.rows_read, first.bad_rows) == (36, 4, 40, [])
    assert [e.row for e in first.train] == [e.row for e in again.train]
    assert [e.row for e in first.eval] == [e.row for e in again.eval]
    assert sorted(e.row for e in first.train + first.eval) == list(range(1, 41))
    example = first.train[0]
    assert example.source == "data/chat.jsonl" and example.text is None
    assert example.messages == chat(example.row - 1)["messages"]

    other = load_data(make_spec([{"path": "data/chat.jsonl"}], eval_split=0.1, training={"seed": 8}), tmp_path)
    assert [e.row for e in other.eval] != [e.row for e in first.eval]


def test_sharegpt_with_renamed_column(tmp_path: Path) -> None:
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": f"hi {i}"},
                {"from": "gpt", "value": "hello"},
            ]
        }
        for i in range(10)
    ]
    write_jsonl(tmp_path / "sg.jsonl", rows)
    loaded = load_data(make_spec([{"path": "sg.jsonl", "columns": {"messages": "conversations"}}]), tmp_path)
    example = next(e for e in loaded.train + loaded.eval if e.row == 3)
    assert example.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi 2"},
        {"role": "assistant", "content": "hello"},
    ]


def test_missing_column_names_column_file_and_fix(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "id": i} for i in range(3)]
    write_jsonl(tmp_path / "data/sg.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_data(make_spec([{"path": "data/sg.jsonl"}]), tmp_path)
    message = str(err.value)
    assert "data/sg.jsonl" in message and "no column 'messages'" in message
    assert "columns found: conversations, id" in message
    assert "columns: {messages: conversations}" in message


def test_prompt_completion_strings_and_message_prompts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "2+2?", "completion": "4"}, {"q": "x", "completion": "y"}])
    write_jsonl(
        tmp_path / "pcm.jsonl",
        [
            {
                "prompt": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and?"},
                ],
                "completion": "bye",
            }
        ],
    )
    spec = make_spec(
        [{"path": "pc.jsonl", "format": "prompt_completion"}, {"path": "pcm.jsonl", "format": "prompt_completion"}], max_bad_rows=0.5
    )
    loaded = load_data(spec, tmp_path)
    by_source = {e.source: e for e in loaded.train + loaded.eval}
    assert by_source["pc.jsonl"].messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert by_source["pc.jsonl"].prompt_turns == 1
    multi = by_source["pcm.jsonl"]
    assert multi.prompt_turns == 3 and multi.messages[-1] == {"role": "assistant", "content": "bye"}
    [bad] = loaded.bad_rows
    assert (bad.source, bad.row, bad.field, bad.problem) == ("pc.jsonl", 2, "prompt", "missing")


def test_alpaca_with_renames(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "a.jsonl",
        [{"question": "Translate", "context": "chat", "answer": "cat"}, {"question": "Say hi", "context": "", "answer": "hi"}],
    )
    spec = make_spec(
        [{"path": "a.jsonl", "format": "alpaca", "columns": {"instruction": "question", "input": "context", "output": "answer"}}]
    )
    loaded = load_data(spec, tmp_path)
    got = {e.row: e.messages for e in loaded.train + loaded.eval}
    assert got[1] == [{"role": "user", "content": "Translate\n\nchat"}, {"role": "assistant", "content": "cat"}]
    assert got[2] == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]


def test_text_format(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", [{"text": "once upon a time"}, {"text": "the end"}])
    loaded = load_data(make_spec([{"path": "t.jsonl", "format": "text"}]), tmp_path)
    assert sorted(e.text for e in loaded.train + loaded.eval) == ["once upon a time", "the end"]
    assert all(e.messages is None for e in loaded.train)


def test_csv_json_and_parquet(tmp_path: Path) -> None:
    with (tmp_path / "pc.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "completion"])
        writer.writerow(["2+2?", "4"])
        writer.writerow(["3+3?", ""])  # data row 2: empty completion
        writer.writerow(["4+4?", "8"])
    with (tmp_path / "chat.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["messages"])
        writer.writerow([json.dumps(chat(0)["messages"])])
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "hi", "output": "hello"}, {"instruction": "bye", "output": 3}]))
    write_jsonl(tmp_path / "lines.json", [{"text": "json lines"}, {"text": "in a .json file"}])
    pq.write_table(
        pa.Table.from_pylist([chat(1), {"messages": [{"role": "user", "content": "no reply"}]}, chat(2)]), tmp_path / "chat.parquet"
    )

    spec = make_spec(
        [
            {"path": "pc.csv", "format": "prompt_completion"},
            {"path": "chat.csv"},
            {"path": "a.json", "format": "alpaca"},
            {"path": "lines.json", "format": "text"},
            {"path": "chat.parquet"},
        ],
        max_bad_rows=0.4,
    )
    loaded = load_data(spec, tmp_path)
    examples = {(e.source, e.row): e for e in loaded.train + loaded.eval}
    assert set(examples) == {
        ("pc.csv", 1),
        ("pc.csv", 3),
        ("chat.csv", 1),
        ("a.json", 1),
        ("lines.json", 1),
        ("lines.json", 2),
        ("chat.parquet", 1),
        ("chat.parquet", 3),
    }
    assert examples[("chat.csv", 1)].messages == chat(0)["messages"]
    assert examples[("chat.parquet", 3)].messages == chat(2)["messages"]
    bad = {(b.source, b.row, b.unit): (b.field, b.problem) for b in loaded.bad_rows}
    assert bad == {
        ("pc.csv", 2, "row"): ("completion", "is empty"),
        ("a.json", 2, "row"): ("output", "must be a string, not a number"),
        ("chat.parquet", 2, "row"): ("messages", "has no assistant message, so nothing would be trained"),
    }


BAD_LINES = [
    chat(0),
    "{not json",  # line 2
    {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]},  # line 3
    {"messages": [{"role": "user", "content": "only a question"}]},  # line 4
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},  # line 5
    {"messages": "hello"},  # line 6
    {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]},  # line 7
    [1, 2],  # line 8
]


def test_bad_rows_over_threshold_fail_with_line_numbers(tmp_path: Path) -> None:
    lines = [*BAD_LINES[:2], "", *BAD_LINES[2:]]  # a blank line 3 shifts the rest: line numbers are the file's
    write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError) as err:
        load_data(make_spec([{"path": "bad.jsonl"}]), tmp_path)
    message = str(err.value)
    assert message.startswith("7 of 8 rows are malformed (87.5%), more than data.max_bad_rows (1.0%)")
    assert "bad.jsonl line 2: not valid JSON" in message
    assert "bad.jsonl line 4: messages[0].role: 'bot' is not a known role: use one of system, user, assistant, tool" in message
    assert "bad.jsonl line 5: messages: has no assistant message" in message
    assert "bad.jsonl line 6: messages[1].content: the assistant's content is empty" in message
    assert "bad.jsonl line 7: messages: is text, not a list of messages" in message
    assert "... and 2 more" in message
    assert "raise data.max_bad_rows" in message


def test_bad_rows_under_threshold_are_dropped_and_reported(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "mixed.jsonl", BAD_LINES + [chat(i) for i in range(1, 100)])
    loaded = load_data(make_spec([{"path": "mixed.jsonl"}], max_bad_rows=0.1), tmp_path)
    assert len(loaded.train) + len(loaded.eval) == 100 and loaded.rows_read == 107
    assert [(b.row, b.field) for b in loaded.bad_rows] == [
        (2, None),
        (3, "messages[0].role"),
        (4, "messages"),
        (5, "messages[1].content"),
        (6, "messages"),
        (7, "messages[0].content"),
        (8, None),
    ]
    assert all(b.unit == "line" and b.fix for b in loaded.bad_rows)
    assert (
        str(loaded.bad_rows[6])
        == "mixed.jsonl line 8: a row must be a JSON object, not a list: each line of a JSONL file must be one JSON object"
    )


def test_max_samples_is_seeded(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "chat.jsonl", [chat(i) for i in range(50)])
    spec = make_spec([{"path": "chat.jsonl", "max_samples": 10}], eval_split=0.1)
    first, again = load_data(spec, tmp_path), load_data(spec, tmp_path)
    rows = sorted(e.row for e in first.train + first.eval)
    assert len(rows) == 10 and rows == sorted(e.row for e in again.train + again.eval)
    other = load_data(make_spec([{"path": "chat.jsonl", "max_samples": 10}], eval_split=0.1, training={"seed": 99}), tmp_path)
    assert sorted(e.row for e in other.train + other.eval) != rows


def test_explicit_eval_sources(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [chat(i) for i in range(5)])
    write_jsonl(tmp_path / "eval.jsonl", [chat(i, "refund") for i in range(3)])
    loaded = load_data(make_spec([{"path": "train.jsonl"}], eval=[{"path": "eval.jsonl"}]), tmp_path)
    assert len(loaded.train) == 5
    assert [e.row for e in loaded.eval] == [1, 2, 3] and {e.source for e in loaded.eval} == {"eval.jsonl"}


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.jsonl: file not found \(data paths are relative to the repository root"):
        load_data(make_spec([{"path": "missing.jsonl"}]), tmp_path)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match=r"d\.txt: unknown file type '\.txt': use one of \.jsonl, \.json, \.csv, \.parquet"):
        load_data(make_spec([{"path": "d.txt"}]), tmp_path)
    (tmp_path / "obj.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="must hold a list of row objects"):
        load_data(make_spec([{"path": "obj.json"}]), tmp_path)


def test_hub_dataset_offline_is_a_clear_error(tmp_path: Path) -> None:
    # conftest sets HF_HUB_OFFLINE=1: nothing on any test machine reaches the Hub.
    spec = make_spec(
        [{"dataset": "acme/missing-dataset", "revision": "v1", "split": "train[:10]", "columns": {"messages": "conversations"}}]
    )
    with pytest.raises(DataError) as err:
        load_data(spec, tmp_path)
    message = str(err.value)
    assert message.startswith("hub:acme/missing-dataset: cannot load the dataset (revision v1, split train[:10])")
    assert "HF_TOKEN" in message
