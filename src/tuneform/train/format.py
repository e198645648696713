"""Examples to token ids with a loss mask, computed by tuneform rather than by the trainer.

Why here and not TRL's `assistant_only_loss`: that option needs `{% generation %}` markers in the
chat template, which most models' templates lack, and what it trains then depends on the
template's author. tuneform finds what to train the same way for every template:

1. Render the conversation with the chat template (the tokenizer's, or a named one).
2. For each trained assistant turn i, render messages[:i] with the generation prompt and
   messages[:i+1]: the text between the two is the turn. Its end-of-turn token is included (the
   model must learn to stop); whitespace after it is not (it is never generated).
3. Tokenise the whole rendering once (never piece by piece: BPE merges across boundaries) with
   character offsets, and mark every token that overlaps a trained span.
4. Truncate to `model.max_seq_length`.

A preference pair is two such sequences, its prompt followed by each answer (data/reader.py's
pair_sequences), each masked to its answer's turns and truncated on its own, keeping the start as
TRL's DPO collator does.

The trained character spans reported back are those of the trained tokens after truncation, so
what `tuneform preview` highlights is exactly what the loss covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tuneform.core.errors import TuneformError
from tuneform.data.reader import Example, load_data, pair_sequences, source_label
from tuneform.runfile.spec import ModelSpec, RunSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TrainOn = Literal["responses", "all"]


@dataclass(frozen=True)
class NamedTemplate:
    """A chat template tuneform ships, and the tokens it needs as single tokens in the vocabulary."""

    template: str
    tokens: tuple[str, ...]


CHAT_TEMPLATES: dict[str, NamedTemplate] = {
    "chatml": NamedTemplate(
        "{%- for message in messages %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
        ("<|im_start|>", "<|im_end|>"),
    ),
    "llama-3": NamedTemplate(
        "{{- bos_token }}"
        "{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
}


class FormatError(TuneformError):
    """An example cannot be rendered or masked as asked; the message says what to change."""


@dataclass(frozen=True)
class Tokenized:
    """One example as the trainer sees it.

    `text` is the rendering as far as the kept tokens reach; `trained_spans` are [start, end)
    character ranges of it, covering exactly the tokens whose `completion_mask` is 1.
    """

    input_ids: list[int]
    completion_mask: list[int]
    text: str
    trained_spans: list[tuple[int, int]]
    truncated: bool
    source: str
    row: int

    @property
    def labels(self) -> list[int]:
        """Causal-LM labels: the token where it is trained, -100 (ignored by the loss) where not."""
        return [token if trained else -100 for token, trained in zip(self.input_ids, self.completion_mask)]


# ---------------------------------------------------------------------------------------------
# Tokenizer


def model_location(model: ModelSpec, repo_root: Path) -> str:
    """What from_pretrained gets: an absolute directory for a local model (a relative 'a/b' reads
    as a Hub id), else the Hub id."""
    return str((repo_root / model.id).resolve()) if model.is_local else model.id


def load_tokenizer(model: str, spec: ModelSpec) -> PreTrainedTokenizerBase:
    """The model's tokenizer, offline when `model` is a local directory, with the run's chat template."""
    from transformers import AutoTokenizer

    local = Path(model).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model,
            revision=None if local else spec.revision,
            local_files_only=local,
            trust_remote_code=spec.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise FormatError(f"cannot load the tokenizer of {model}: {exc}") from exc
    return prepare_tokenizer(tokenizer, spec)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, spec: ModelSpec) -> PreTrainedTokenizerBase:
    """Check the tokenizer can map characters to tokens and install a named chat template.

    The named template is set on the tokenizer itself, so that it is saved with the trained
    model and inference renders prompts the way training did.
    """
    name = getattr(tokenizer, "name_or_path", "") or "the model"
    if not tokenizer.is_fast:
        raise FormatError(
            f"the tokenizer of {name} is a slow (Python) tokenizer: tuneform needs a fast one (a tokenizer.json) "
            "to map trained characters to tokens"
        )
    if spec.chat_template is None:
        return tokenizer
    named = CHAT_TEMPLATES.get(spec.chat_template)
    if named is None:
        raise FormatError(f"unknown chat template '{spec.chat_template}' in model.chat_template: use one of {', '.join(CHAT_TEMPLATES)}")
    missing = [token for token in named.tokens if len(tokenizer.encode(token, add_special_tokens=False)) != 1]
    if missing:
        raise FormatError(
            f"chat template {spec.chat_template} needs {', '.join(missing)} as single tokens, and the tokenizer of {name} "
            "does not have them: pick the template the model was trained with"
        )
    tokenizer.chat_template = named.template
    return tokenizer


# ---------------------------------------------------------------------------------------------
# Rendering and masking


def render(example: Example, tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[tuple[int, int]]]:
    """The text an example trains on, and the character spans its responses occupy.

    A conversation's spans are its assistant turns after the prompt turns; a text is one span.
    """
    if example.text is not None:
        bos, eos = _added_bos(tokenizer), tokenizer.eos_token
        # As TRL does for language modelling: end each text with EOS so the model learns to stop.
        text = example.text if not eos or example.text.endswith(eos) else example.text + eos
        text = text if not bos or text.startswith(bos) else bos + text
        return text, [(0, len(text))]
    messages = example.messages or []
    full = _render(tokenizer, messages, False, example)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i < example.prompt_turns:
            continue
        before = _render(tokenizer, messages[:i], True, example)
        through = _render(tokenizer, messages[: i + 1], False, example)
        if not (through.startswith(before) and full.startswith(through)):
            raise FormatError(
                f"{example.source} row {example.row}: the chat template of {tokenizer.name_or_path} renders earlier turns "
                f"differently once later turns follow (turn {i}), so the assistant's text cannot be located: "
                "set model.chat_template (chatml, llama-3) or use train_on: all"
            )
        # The end-of-turn token belongs to the reply; the newline a template writes after it does not.
        spans.append((len(before), len(through.rstrip())))
    return full, spans


def _added_bos(tokenizer: PreTrainedTokenizerBase) -> str:
    """The BOS token a tokenizer puts before plain text (Llama 3's does, byte-level GPT-2 style ones
    do not), so that it can be written into the text: every token then has characters behind it."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    special = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos_id = tokenizer.bos_token_id
    return tokenizer.bos_token if bos_id is not None and len(special) > len(plain) and special[0] == bos_id else ""


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], add_generation_prompt: bool, example: Example) -> str:
    if tokenizer.chat_template is None:
        raise FormatError(f"model {tokenizer.name_or_path} has no chat template: set model.chat_template: chatml")
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja raises template errors of many kinds, and templates raise their own
        raise FormatError(f"{example.source} row {example.row}: the chat template failed: {exc}") from exc
    return str(text)


def tokenize(example: Example, tokenizer: PreTrainedTokenizerBase, *, train_on: TrainOn, max_seq_length: int) -> Tokenized:
    """Render, tokenise with offsets, mask and truncate one example."""
    text, targets = render(example, tokenizer)
    if train_on == "all":
        targets = [(0, len(text))]
    # The rendered text already holds every special token (the template's, or the BOS written in
    # by render), so the tokenizer adds none.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ranges = _token_ranges(encoding["offset_mapping"])
    mask = _mask(ranges, targets, everything=train_on == "all")
    ids = list(encoding["input_ids"])
    truncated = len(ids) > max_seq_length
    ids, ranges, mask = ids[:max_seq_length], ranges[:max_seq_length], mask[:max_seq_length]
    covered = ranges[-1][1] if ranges else 0
    return Tokenized(ids, mask, text[:covered], _spans(ranges, mask), truncated, example.source, example.row)


def tokenize_answers(example: Example, tokenizer: PreTrainedTokenizerBase, *, max_seq_length: int) -> list[tuple[str, Tokenized]]:
    """A preference pair's two sequences, labelled chosen and rejected, each with only its
    answer trained (a pair has no train_on: all, since the prompt is what both answers share)."""
    return [
        (label, tokenize(sequence, tokenizer, train_on="responses", max_seq_length=max_seq_length))
        for label, sequence in pair_sequences(example)
    ]


def tokenize_all(examples: list[Example], tokenizer: PreTrainedTokenizerBase, *, train_on: TrainOn, max_seq_length: int) -> list[Tokenized]:
    """Every example, in order."""
    return [tokenize(e, tokenizer, train_on=train_on, max_seq_length=max_seq_length) for e in examples]


def _token_ranges(offsets: list[Any]) -> list[tuple[int, int]]:
    """Give each token the characters from the previous token's end to its own end.

    Tokenizers trim offsets differently (a byte-level token ' billing' may report only 'billing'),
    and the byte pieces of one character all report that character. Counting from the previous
    end covers every character exactly once, so decoding a run of tokens gives back exactly the
    characters of their ranges.
    """
    ranges: list[tuple[int, int]] = []
    previous = 0
    for _, end in offsets:
        end = max(end, previous)
        ranges.append((previous, end))
        previous = end
    return ranges


def _mask(ranges: list[tuple[int, int]], targets: list[tuple[int, int]], *, everything: bool) -> list[int]:
    """1 for a token that overlaps a target span; a token with no characters of its own (a later
    byte piece of a character) goes with the token before it."""
    if everything:
        return [1] * len(ranges)
    mask: list[int] = []
    for start, end in ranges:
        if start == end:
            mask.append(mask[-1] if mask else 0)
        else:
            mask.append(int(any(start < t_end and end > t_start for t_start, t_end in targets)))
    return mask


def _spans(ranges: list[tuple[int, int]], mask: list[int]) -> list[tuple[int, int]]:
    """Trained tokens' ranges, merged where they touch."""
    spans: list[tuple[int, int]] = []
    for (start, end), trained in zip(ranges, mask):
        if not trained or start == end:
            continue
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


# ---------------------------------------------------------------------------------------------
# Preview


@dataclass(frozen=True)
class PreviewSample:
    """A rendered training example with what the loss covers, for `tuneform preview`."""

    source: str
    row: int
    text: str
    trained_spans: list[tuple[int, int]]
    tokens: int
    trained_tokens: int
    truncated: bool
    answer: str | None = None  # a preference pair's sequence: "chosen" or "rejected"; None otherwise

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "row": self.row,
            "text": self.text,
            "trained_spans": [list(span) for span in self.trained_spans],
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "truncated": self.truncated,
            "answer": self.answer,
        }

    def marked(self, style: Literal["rich", "brackets"] = "rich", start: int = 0, end: int | None = None) -> str:
        """The text with trained spans highlighted: rich markup for a terminal, ⟦ ⟧ for plain text.
        `start` and `end` show a part of it (a pair's prompt once, then each answer after it)."""
        from tuneform.core.markup import rich_escape as escape

        text = self.text[:end]
        parts: list[str] = []
        position = start
        for span_start, span_end in self.trained_spans:
            span_start, span_end = max(span_start, position), min(span_end, len(text))
            if span_end <= span_start:
                continue
            untrained, trained = text[position:span_start], text[span_start:span_end]
            if style == "rich":
                parts.append(f"[dim]{escape(untrained)}[/dim][bold green]{escape(trained)}[/bold green]")
            else:
                parts.append(f"{untrained}⟦{trained}⟧")
            position = span_end
        tail = text[position:]
        parts.append(f"[dim]{escape(tail)}[/dim]" if style == "rich" else tail)
        return "".join(parts)


def shared_prompt(chosen: PreviewSample, rejected: PreviewSample) -> int:
    """Characters a pair's two sequences share before either answer's first trained character:
    the rendered prompt, which a preview shows once above both answers."""
    common = 0
    for a, b in zip(chosen.text, rejected.text):
        if a != b:
            break
        common += 1
    firsts = [spans[0][0] for spans in (chosen.trained_spans, rejected.trained_spans) if spans]
    return min([common, *firsts])


def preview(spec: RunSpec, repo_root: Path, n: int) -> list[PreviewSample]:
    """The first n training examples (in file order) as the trainer will see them; a preference
    pair gives two samples, its chosen then its rejected sequence."""
    loaded = load_data(spec, repo_root)
    order: dict[str, int] = {}
    for src in spec.data.train:
        order.setdefault(source_label(src), len(order))
    first = sorted(loaded.train, key=lambda e: (order[e.source], e.row))[:n]
    tokenizer = load_tokenizer(model_location(spec.model, repo_root), spec.model)
    samples = []
    length = spec.model.max_seq_length
    for example in first:
        if example.is_preference:
            sequences: list[tuple[str | None, Tokenized]] = list(tokenize_answers(example, tokenizer, max_seq_length=length))
        else:
            sequences = [(None, tokenize(example, tokenizer, train_on=spec.training.train_on, max_seq_length=length))]
        for answer, t in sequences:
            samples.append(
                PreviewSample(t.source, t.row, t.text, t.trained_spans, len(t.input_ids), sum(t.completion_mask), t.truncated, answer)
            )
    return samples


# ---------------------------------------------------------------------------------------------
# Preference pairs


@dataclass(frozen=True)
class TokenizedPair:
    """One preference row as a preference trainer sees it: the prompt's tokens, then each
    answer's tokens as they follow that prompt.

    Each answer is rendered exactly as the SFT path renders an assistant reply (the chat template,
    the end-of-turn token trained, the whitespace after it not), so a preference-trained model is
    served with the same prompt it trained on. `chosen_ids` and `rejected_ids` end at their last
    trained token.
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    source: str
    row: int

    @property
    def trainable(self) -> bool:
        """Whether both answers kept a token within model.max_seq_length."""
        return bool(self.chosen_ids) and bool(self.rejected_ids)


def tokenize_pair(example: Example, tokenizer: PreTrainedTokenizerBase, *, max_seq_length: int) -> TokenizedPair:
    """Render and tokenise both answers of a preference row after its prompt, truncated to
    `max_seq_length` as the SFT path truncates.

    The prompt is the tokens both renderings share before either answer's first trained token
    (a template that rendered the prompt differently before the two answers would leave less of
    it shared; what differs then counts as answer).
    """
    (_, chosen), (_, rejected) = tokenize_answers(example, tokenizer, max_seq_length=max_seq_length)
    starts = [row.completion_mask.index(1) if any(row.completion_mask) else len(row.input_ids) for row in (chosen, rejected)]
    shared = 0
    while shared < min(starts) and chosen.input_ids[shared] == rejected.input_ids[shared]:
        shared += 1

    def answer(row: Tokenized) -> list[int]:
        trained = [i for i, flag in enumerate(row.completion_mask) if flag]
        return row.input_ids[shared : trained[-1] + 1] if trained else []

    return TokenizedPair(chosen.input_ids[:shared], answer(chosen), answer(rejected), example.source, example.row)
