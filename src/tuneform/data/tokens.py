"""Count the tokens a run will train on, without torch or datasets (plan must stay light).

Rows are read and converted by data/reader.py, the job's own reader (parse_rows, convert_rows,
sample_examples): the plan counts the examples the job keeps, from the rows it keeps, and a file
the job would reject raises the job's DataError here, so validate and plan report it with the
same message and row. Tokens are counted with the `tokenizers` package when the model's
tokenizer.json is at hand (a local model, or the Hugging Face cache); otherwise bytes/4, and the
result says which, so a reviewer knows how far to trust it.

What the count matches exactly, with a tokenizer: a `text` row, as train/format.py renders it
(the BOS the tokenizer adds, the text, EOS), capped at max_seq_length, and the rows max_samples
keeps. A preference row is two sequences, prompt + chosen and prompt + rejected, each rendered
through the chat template and each capped at max_seq_length on its own: TRL's DPO collator (1.14)
keeps the start of each sequence (truncation_mode keep_start, no separate prompt limit), so a long
answer loses its end; a pair whose prompt alone fills max_seq_length leaves nothing to compare, and
TRL drops it before training, so it is not counted (`prompt_filled` says how many). What stays approximate: a conversation's chat-template overhead, counted as
TEMPLATE_TOKENS_PER_MESSAGE per message over its contents joined (rendering the template needs
transformers); bytes/4 when no tokenizer is at hand; the eval split, taken as a fraction of the
tokens (estimate/sizing.py) rather than the seeded rows the job holds out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.data.reader import BadRow, Example, convert_rows, pair_sequences, parse_source, sample_examples
from tuneform.runfile.resolve import local_model_dir
from tuneform.runfile.spec import LocalSource, RunSpec
from tuneform.runfile.trees import Tree, TreeError

# Chat templates add role markers around each message; a few tokens each across common templates.
TEMPLATE_TOKENS_PER_MESSAGE = 4
BYTES_PER_TOKEN = 4.0


@dataclass(frozen=True)
class TokenCount:
    """Rows and tokens of one source as the job keeps them, each sequence capped at max_seq_length.

    A row is one sequence, or two for a preference pair (``tokens`` counts both, ``truncated_rows``
    the pairs with either one cut). ``longest`` is the longest sequence (capped): what an unpacked
    batch is padded to. ``rows_read`` counts every row of the file, kept or not; ``bad`` are the
    rows the job drops, with why.
    """

    rows: int
    tokens: int  # after truncation to max_seq_length
    truncated_rows: int
    method: str  # "tokenizer" or "bytes/4"
    longest: int | None
    rows_read: int = 0
    bad: tuple[BadRow, ...] = ()
    prompt_filled: int = 0  # pairs whose prompt alone fills max_seq_length: the trainer drops them (not in rows)


@dataclass(frozen=True)
class LocalTokenizer:
    """A model's tokenizer files found on this machine: tokenizer.json, and its
    tokenizer_config.json when present (it names the BOS and EOS tokens the job writes)."""

    tokenizer_json: bytes
    config_json: bytes | None = None


def _special(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if isinstance(value, dict):  # older configs: {"content": "<s>", ...}
        value = value.get("content")
    return value if isinstance(value, str) and value else None


class Counter:
    """Turns examples into token counts with a real tokenizer or the bytes/4 rule.

    A tokenizer's counts are remembered by the text's digest: plan reads each local file twice,
    for the estimate and for the data check, and the texts are the same in both, so the second
    pass tokenises nothing new. Measured on the dev machine (2 cores), plan of one run on a 94 MB
    chat file with the demo model's tokenizer: 42 s before, 15 s after. Repeated rows are
    tokenised once.
    """

    def __init__(self, tokenizer: LocalTokenizer | None):
        self._tokenizer = None
        self._bos = 0  # tokens the job puts before a text row (train/format.py's render)
        self._eos: str | None = None
        if tokenizer is not None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(tokenizer.tokenizer_json.decode("utf-8"))
            config = json.loads(tokenizer.config_json) if tokenizer.config_json else {}
            config = config if isinstance(config, dict) else {}
            self._eos = _special(config, "eos_token")
            bos = _special(config, "bos_token")
            plain = self._tokenizer.encode("a", add_special_tokens=False).ids
            special = self._tokenizer.encode("a", add_special_tokens=True).ids
            bos_id = self._tokenizer.token_to_id(bos) if bos else None
            self._bos = int(bos_id is not None and len(special) > len(plain) and special[0] == bos_id)
        self.method = "tokenizer" if self._tokenizer is not None else "bytes/4"
        self._known: dict[bytes, int] = {}

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text, no special tokens added."""
        if self._tokenizer is None:
            return [int(len(t.encode("utf-8")) / BYTES_PER_TOKEN + 0.5) for t in texts]
        keys = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts]
        new = {key: text for key, text in zip(keys, texts) if key not in self._known}
        if new:
            encoded = self._tokenizer.encode_batch(list(new.values()), add_special_tokens=False)
            self._known.update(zip(new, (len(e.ids) for e in encoded)))
        return [self._known[key] for key in keys]

    def lengths(self, examples: list[Example]) -> list[int]:
        """Tokens of each example as the job renders it (uncapped): a pair's two sequences
        together. See the module's docstring for what is exact and what is approximate."""
        return [sum(sequences) for sequences in self.sequences(examples)]

    def sequences(self, examples: list[Example]) -> list[tuple[int, ...]]:
        """Tokens of each sequence an example trains on (uncapped): one for a conversation or
        a text, prompt + chosen and prompt + rejected for a preference pair."""
        flat = [sequence for example in examples for sequence in _split(example)]
        lengths = iter(self._lengths(flat))
        return [tuple(next(lengths) for _ in range(2 if example.is_preference else 1)) for example in examples]

    def prompts(self, examples: list[Example]) -> list[int]:
        """Tokens of each example's prompt turns (those never trained), as the template renders
        them: a pair whose prompt alone fills max_seq_length has no answer token left to compare."""
        return self._lengths([Example(e.source, e.row, messages=(e.messages or [])[: e.prompt_turns]) for e in examples])

    def _lengths(self, examples: list[Example]) -> list[int]:
        """Tokens of each single sequence (no pairs among them)."""
        texts: list[str] = []
        extra: list[int] = []
        for example in examples:
            if example.messages is None:
                text = example.text or ""
                eos = self._eos if self._eos and not text.endswith(self._eos) else ""
                texts.append(text + eos)
                extra.append(self._bos)
            else:
                texts.append("\n".join(m["content"] for m in example.messages))
                extra.append(len(example.messages) * TEMPLATE_TOKENS_PER_MESSAGE)
        return [n + e for n, e in zip(self.count(texts), extra)] if texts else []


def _split(example: Example) -> list[Example]:
    """An example's sequences: itself, or a pair's prompt + chosen and prompt + rejected."""
    return [sequence for _, sequence in pair_sequences(example)] if example.is_preference else [example]


def count_source(data: bytes, source: LocalSource, counter: Counter, max_seq_length: int, seed: int) -> TokenCount:
    """Token count of one local file as the job reads it, each sequence capped at max_seq_length.

    Raises DataError, the job's own, when the job could not read the file at all.
    """
    unit, rows = parse_source(data, source.path)
    examples, bad = convert_rows(source, source.path, unit, rows)
    kept = sample_examples(examples, source.max_samples, seed)
    filled = 0
    if source.format == "preference":  # TRL drops a pair whose prompt leaves no room for an answer token
        fits = [n < max_seq_length for n in counter.prompts(kept)]
        kept, filled = [e for e, room in zip(kept, fits) if room], fits.count(False)
    sequences = counter.sequences(kept)
    lengths = [n for row in sequences for n in row]
    capped = sum(min(n, max_seq_length) for n in lengths)
    truncated = sum(1 for row in sequences if max(row) > max_seq_length)
    longest = min(max(lengths, default=0), max_seq_length)
    return TokenCount(len(sequences), capped, truncated, counter.method, longest, len(rows), tuple(bad), filled)


def local_tokenizer(spec: RunSpec, tree: Tree) -> LocalTokenizer | None:
    """The base model's tokenizer files when they are already on this machine; never downloads."""
    tokenizer_json = _model_file(spec, tree, "tokenizer.json")
    if tokenizer_json is None:
        return None
    return LocalTokenizer(tokenizer_json, _model_file(spec, tree, "tokenizer_config.json"))


def _model_file(spec: RunSpec, tree: Tree, name: str) -> bytes | None:
    """A file of the base model: in the repository's model folder, an absolute folder, or the
    Hugging Face cache."""
    if spec.model.is_local and not spec.model.id.startswith("/"):
        try:
            return tree.read(f"{local_model_dir(spec.model.id)}/{name}")
        except TreeError:
            return None
    if spec.model.is_local:
        path = Path(spec.model.id) / name
        return path.read_bytes() if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec.model.id, name, revision=spec.model.revision)
    if isinstance(cached, str):
        with open(cached, "rb") as handle:
            return handle.read()
    return None


_COUNTERS: dict[str, Counter] = {}


def token_counter(tokenizer: LocalTokenizer | None) -> tuple[str, Counter]:
    """A counter for these tokenizer files (one per process), and an id for cache keys."""
    if tokenizer is None:
        digest = "bytes/4"
    else:
        digest = hashlib.sha256(tokenizer.tokenizer_json + b"\0" + (tokenizer.config_json or b"")).hexdigest()
    if digest not in _COUNTERS:
        _COUNTERS[digest] = Counter(tokenizer)
    return digest, _COUNTERS[digest]
