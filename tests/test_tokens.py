"""tokens: counts from the model's tokenizer, remembered across plan's two passes, over the rows
the job keeps (data/reader.py's parsing and converters)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from tuneform.data.reader import DataError
from tuneform.data.tokens import Counter, LocalTokenizer, count_source
from tuneform.runfile.spec import LocalSource

MODEL = Path(__file__).resolve().parent.parent / "models" / "demo-tiny"
TOKENIZER_JSON = (MODEL / "tokenizer.json").read_bytes()
TOKENIZER = LocalTokenizer(TOKENIZER_JSON)


def _fresh(texts: list[str]) -> list[int]:
    tokenizer = Tokenizer.from_str(TOKENIZER_JSON.decode("utf-8"))
    return [len(tokenizer.encode(text, add_special_tokens=False).ids) for text in texts]


def test_remembered_counts_are_the_tokenizers_counts() -> None:
    counter = Counter(TOKENIZER)
    first = ["my invoice is wrong", "refund please", "my invoice is wrong", ""]
    second = ["refund please", "where is my order #123?", "my invoice is wrong, again"]
    assert counter.method == "tokenizer"
    assert counter.count(first) == _fresh(first)
    assert counter.count(second) == _fresh(second)  # one text seen before, two new ones
    assert counter.count(first + second) == _fresh(first + second)
    assert counter.count([]) == []


def test_longest_row_is_counted_and_capped(tmp_path: Path) -> None:
    rows = b'{"text": "short"}\n{"text": "' + b"word " * 400 + b'"}\n'
    source = LocalSource(path="data/rows.jsonl", format="text")
    words = _fresh(["word " * 400])[0]
    counted = count_source(rows, source, Counter(TOKENIZER), max_seq_length=4096, seed=0)
    assert counted.longest == words and counted.rows == 2
    capped = count_source(rows, source, Counter(TOKENIZER), max_seq_length=64, seed=0)
    assert capped.longest == 64 and capped.truncated_rows == 1
    table = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "short"}, {"text": "word " * 400}]), table)
    parquet = count_source(table.read_bytes(), LocalSource(path="data/rows.parquet", format="text"), Counter(TOKENIZER), 4096, 0)
    assert (parquet.rows, parquet.longest, parquet.tokens) == (2, words, counted.tokens)  # read row by row, as the job reads it


def test_rows_the_job_drops_are_not_counted() -> None:
    rows = b'{"text": "kept"}\n{"text": ""}\nnot json\n{"text": "also kept"}\n'
    counted = count_source(rows, LocalSource(path="data/rows.jsonl", format="text"), Counter(TOKENIZER), 4096, 0)
    assert (counted.rows, counted.rows_read) == (2, 4)
    assert counted.tokens == sum(_fresh(["kept", "also kept"]))
    assert [(bad.row, bad.field) for bad in counted.bad] == [(2, "text"), (3, None)]
    assert counted.bad[0].problem == "is empty" and counted.bad[1].problem.startswith("not valid JSON")


def test_a_file_the_job_rejects_raises_the_jobs_error() -> None:
    sharegpt = b'{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}\n'
    source = LocalSource(path="data/sharegpt.jsonl", format="messages")
    with pytest.raises(
        DataError,
        match=r"^data/sharegpt\.jsonl: no column 'messages' .*columns: \{messages: conversations\} \(its ShareGPT turns are converted",
    ):
        count_source(sharegpt, source, Counter(None), 4096, 0)
    renamed = LocalSource(path="data/sharegpt.jsonl", format="messages", columns={"messages": "conversations"})
    assert count_source(sharegpt, renamed, Counter(None), 4096, 0).rows == 1


def test_max_samples_counts_the_rows_the_job_samples() -> None:
    texts = [f"row {i} " + "x " * i for i in range(20)]
    data = "".join(f'{{"text": "{t}"}}\n' for t in texts).encode()
    source = LocalSource(path="data/rows.jsonl", format="text", max_samples=5)
    counted = count_source(data, source, Counter(TOKENIZER), 4096, seed=7)
    keep = sorted(random.Random(7).sample(range(20), 5))  # the job's draw (reader.sample_examples)
    assert counted.rows == 5 and counted.tokens == sum(_fresh([texts[i] for i in keep]))


def test_text_rows_count_the_bos_and_eos_the_job_writes() -> None:
    counter = Counter(LocalTokenizer(TOKENIZER_JSON, (MODEL / "tokenizer_config.json").read_bytes()))
    counted = count_source(b'{"text": "refund please"}\n', LocalSource(path="d.jsonl", format="text"), counter, 4096, 0)
    assert counted.tokens == _fresh(["refund please<|im_end|>"])[0] == _fresh(["refund please"])[0] + 1
