"""tokens.Counter: counts from the model's tokenizer, remembered across plan's two passes."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from tuneform.data.tokens import Counter, count_source
from tuneform.runfile.spec import LocalSource

TOKENIZER_JSON = (Path(__file__).resolve().parent.parent / "models" / "demo-tiny" / "tokenizer.json").read_bytes()


def _fresh(texts: list[str]) -> list[int]:
    tokenizer = Tokenizer.from_str(TOKENIZER_JSON.decode("utf-8"))
    return [len(tokenizer.encode(text, add_special_tokens=False).ids) for text in texts]


def test_remembered_counts_are_the_tokenizers_counts() -> None:
    counter = Counter(TOKENIZER_JSON)
    first = ["my invoice is wrong", "refund please", "my invoice is wrong", ""]
    second = ["refund please", "where is my order #123?", "my invoice is wrong, again"]
    assert counter.method == "tokenizer"
    assert counter.count(first) == _fresh(first)
    assert counter.count(second) == _fresh(second)  # one text seen before, two new ones
    assert counter.count(first + second) == _fresh(first + second)
    assert counter.count([]) == []


def test_longest_row_is_counted_and_capped() -> None:
    rows = b'{"text": "short"}\n{"text": "' + b"word " * 400 + b'"}\n'
    source = LocalSource(path="data/rows.jsonl", format="text")
    words = _fresh(["word " * 400])[0]
    counted = count_source(rows, source, Counter(TOKENIZER_JSON), max_seq_length=4096)
    assert counted.longest == words and counted.rows == 2
    capped = count_source(rows, source, Counter(TOKENIZER_JSON), max_seq_length=64)
    assert capped.longest == 64 and capped.truncated_rows == 1
    parquet = count_source(b"\0" * 400, LocalSource(path="data/rows.parquet", format="text"), Counter(None), 64)
    assert parquet.longest is None  # sized from its bytes: no row lengths
