"""Loss masks checked token by token, against two templates, for every format and train_on value.

The oracle is independent of tuneform's method: both test templates carry `{% generation %}`
markers, so transformers' own `return_assistant_tokens_mask` says which tokens are the
assistant's. tuneform never uses those markers (most templates lack them); it must agree anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tuneform.data.reader import Example
from tuneform.runfile.spec import ModelSpec, RunSpec
from tuneform.train.format import (
    FormatError,
    Tokenized,
    load_tokenizer,
    prepare_tokenizer,
    preview,
    tokenize,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo-tiny"

# Llama 3's layout, with generation markers for the oracle: header, blank line, content, <|eot_id|>.
LLAMA3_MARKED = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def chatml() -> PreTrainedTokenizerBase:
    """The demo model's tokenizer: ChatML with BOS, markers around content + <|im_end|>, newline after."""
    return load_tokenizer(str(DEMO), ModelSpec(id="./models/demo-tiny"))


@pytest.fixture(scope="module")
def llama3() -> PreTrainedTokenizerBase:
    """A Llama-3-style tokenizer built here: the demo BPE plus Llama 3's special tokens, and a
    post-processor that puts <|begin_of_text|> before plain text, as Llama 3's does."""
    backend = Tokenizer.from_file(str(DEMO / "tokenizer.json"))
    backend.add_special_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    bos = backend.token_to_id("<|begin_of_text|>")
    backend.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|pad|>", chat_template=LLAMA3_MARKED
    )
    tokenizer.name_or_path = "test/llama3-style"
    return tokenizer


CONVERSATION = [
    {"role": "system", "content": "Classify the customer message."},
    {"role": "user", "content": "Hi, my card was declined."},
    {"role": "assistant", "content": "billing"},
    {"role": "user", "content": "And my parcel? 📦"},
    {"role": "assistant", "content": "track_order 😀"},
]
EXAMPLES = {
    "messages": Example("c.jsonl", 1, messages=CONVERSATION),
    # An earlier assistant turn inside the prompt is context, not target.
    "prompt_completion": Example(
        "pc.jsonl", 1, messages=CONVERSATION[:4] + [{"role": "assistant", "content": "track_order"}], prompt_turns=4
    ),
    "alpaca": Example("a.jsonl", 1, messages=[{"role": "user", "content": "Translate\n\nchat"}, {"role": "assistant", "content": "cat"}]),
    "text": Example("t.jsonl", 1, text="Once upon a time, the end."),
}
EXPECTED_TRAINED = {
    ("chatml", "messages"): ["billing<|im_end|>", "track_order 😀<|im_end|>"],
    ("chatml", "prompt_completion"): ["track_order<|im_end|>"],
    ("chatml", "alpaca"): ["cat<|im_end|>"],
    ("chatml", "text"): ["Once upon a time, the end.<|im_end|>"],
    ("llama3", "messages"): ["billing<|eot_id|>", "track_order 😀<|eot_id|>"],
    ("llama3", "prompt_completion"): ["track_order<|eot_id|>"],
    ("llama3", "alpaca"): ["cat<|eot_id|>"],
    ("llama3", "text"): ["<|begin_of_text|>Once upon a time, the end.<|eot_id|>"],
}


def trained_runs(t: Tokenized, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Each run of consecutive trained tokens, decoded."""
    runs: list[list[int]] = [[]]
    for token, trained in zip(t.input_ids, t.completion_mask):
        if trained:
            runs[-1].append(token)
        elif runs[-1]:
            runs.append([])
    return [tokenizer.decode(run) for run in runs if run]


def oracle_mask(example: Example, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """transformers' assistant mask from the {% generation %} markers; prompt turns unmarked."""
    if example.text is not None:
        return [1] * len(tokenizer(example.text)["input_ids"] + [tokenizer.eos_token_id])
    out = tokenizer.apply_chat_template(example.messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    mask = list(out["assistant_masks"])
    if example.prompt_turns:
        # Keep only the last run: the completion.
        last_start = max(i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1]))
        mask = [m if i >= last_start else 0 for i, m in enumerate(mask)]
    return mask


@pytest.mark.parametrize("fmt", list(EXAMPLES))
@pytest.mark.parametrize("name", ["chatml", "llama3"])
def test_responses_mask_token_by_token(name: str, fmt: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(name)
    example = EXAMPLES[fmt]
    t = tokenize(example, tokenizer, train_on="responses", max_seq_length=512)
    assert t.completion_mask == oracle_mask(example, tokenizer)
    assert trained_runs(t, tokenizer) == EXPECTED_TRAINED[(name, fmt)]
    # The reported spans are exactly the trained tokens' characters.
    assert [t.text[s:e] for s, e in t.trained_spans] == EXPECTED_TRAINED[(name, fmt)]
    assert t.labels == [tok if m else -100 for tok, m in zip(t.input_ids, t.completion_mask)]
    if example.messages is not None:
        # End of turn trained, the newline or header after it not.
        eot = tokenizer.convert_tokens_to_ids("<|im_end|>" if name == "chatml" else "<|eot_id|>")
        for i, token in enumerate(t.input_ids):
            if token == eot and t.completion_mask[i] and i + 1 < len(t.input_ids):
                assert t.completion_mask[i + 1] == 0


@pytest.mark.parametrize("fmt", list(EXAMPLES))
@pytest.mark.parametrize("name", ["chatml", "llama3"])
def test_train_on_all_trains_every_token(name: str, fmt: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(name)
    t = tokenize(EXAMPLES[fmt], tokenizer, train_on="all", max_seq_length=512)
    assert t.completion_mask == [1] * len(t.input_ids)
    assert t.trained_spans == [(0, len(t.text))]
    assert tokenizer.decode(t.input_ids) == t.text


def test_named_llama3_template_matches_the_marked_one(llama3: PreTrainedTokenizerBase) -> None:
    named = prepare_tokenizer(
        PreTrainedTokenizerFast(tokenizer_object=llama3.backend_tokenizer, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"),
        ModelSpec(id="./m", chat_template="llama-3"),
    )
    example = EXAMPLES["messages"]
    ours = tokenize(example, named, train_on="responses", max_seq_length=512)
    assert ours.text == llama3.apply_chat_template(CONVERSATION, tokenize=False)
    assert ours.completion_mask == oracle_mask(example, llama3)


def test_named_chatml_template(chatml: PreTrainedTokenizerBase) -> None:
    tokenizer = load_tokenizer(str(DEMO), ModelSpec(id="./models/demo-tiny", chat_template="chatml"))
    t = tokenize(EXAMPLES["alpaca"], tokenizer, train_on="responses", max_seq_length=512)
    assert t.text == "<|im_start|>user\nTranslate\n\nchat<|im_end|>\n<|im_start|>assistant\ncat<|im_end|>\n"
    assert trained_runs(t, tokenizer) == ["cat<|im_end|>"]


def test_template_errors(chatml: PreTrainedTokenizerBase, llama3: PreTrainedTokenizerBase) -> None:
    with pytest.raises(FormatError, match="unknown chat template 'chatlm' in model.chat_template: use one of chatml, llama-3"):
        load_tokenizer(str(DEMO), ModelSpec(id="./models/demo-tiny", chat_template="chatlm"))
    with pytest.raises(
        FormatError, match="chat template llama-3 needs <|start_header_id|>, <|end_header_id|>, <|eot_id|> as single tokens"
    ):
        load_tokenizer(str(DEMO), ModelSpec(id="./models/demo-tiny", chat_template="llama-3"))

    bare = AutoTokenizer.from_pretrained(str(DEMO), local_files_only=True)
    bare.chat_template = None
    with pytest.raises(FormatError, match=r"model .*demo-tiny has no chat template: set model.chat_template: chatml"):
        tokenize(EXAMPLES["messages"], bare, train_on="responses", max_seq_length=512)
    # Plain text needs no template.
    assert tokenize(EXAMPLES["text"], bare, train_on="responses", max_seq_length=512).completion_mask

    # A template that rewrites earlier turns once later ones follow cannot be masked by prefixes.
    shifty = AutoTokenizer.from_pretrained(str(DEMO), local_files_only=True)
    shifty.chat_template = (
        "{%- for m in messages %}{{ m['role'] + ': ' + (m['content'] if loop.last or m['role'] != 'assistant' else '...') + '\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(FormatError, match=r"c.jsonl row 1: the chat template .* renders earlier turns differently .*turn 2"):
        tokenize(EXAMPLES["messages"], shifty, train_on="responses", max_seq_length=512)


def test_truncation(chatml: PreTrainedTokenizerBase) -> None:
    example = EXAMPLES["messages"]
    full = tokenize(example, chatml, train_on="responses", max_seq_length=512)
    first_eot = full.input_ids.index(chatml.convert_tokens_to_ids("<|im_end|>"), full.completion_mask.index(1))
    # Cut right after the first reply: the second is gone, the first is whole.
    cut = tokenize(example, chatml, train_on="responses", max_seq_length=first_eot + 1)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[: first_eot + 1] and cut.completion_mask == full.completion_mask[: first_eot + 1]
    assert trained_runs(cut, chatml) == ["billing<|im_end|>"] == [cut.text[s:e] for s, e in cut.trained_spans]
    assert chatml.decode(cut.input_ids) == cut.text
    # Cut before any reply: nothing left to train (the engine drops such examples).
    prompt_only = tokenize(example, chatml, train_on="responses", max_seq_length=5)
    assert len(prompt_only.input_ids) == 5 and not any(prompt_only.completion_mask) and prompt_only.trained_spans == []


def test_preview_spans_are_the_decoded_trained_tokens(chatml: PreTrainedTokenizerBase) -> None:
    spec = RunSpec.model_validate(
        {
            "model": {"id": "./models/demo-tiny", "max_seq_length": 128},
            "data": {"train": [{"path": "data/support.jsonl"}]},
            "training": {"seed": 42},
        }
    )
    samples = preview(spec, ROOT, 3)
    assert len(samples) == 3 and [s.row for s in samples] == sorted(s.row for s in samples)
    for sample in samples:
        data = sample.as_json()
        assert set(data) >= {"text", "trained_spans", "tokens", "trained_tokens"}
        ids = chatml(data["text"], add_special_tokens=False)["input_ids"]
        assert len(ids) == data["tokens"]
        t = tokenize(
            Example(sample.source, sample.row, messages=_row_messages(sample.row)), chatml, train_on="responses", max_seq_length=128
        )
        assert t.input_ids == ids
        assert [data["text"][s:e] for s, e in data["trained_spans"]] == trained_runs(t, chatml)
        assert data["trained_tokens"] == sum(t.completion_mask) and data["trained_spans"][-1][1] < len(data["text"])
        assert data["text"][data["trained_spans"][-1][1] :] == "\n"
        label = data["text"][slice(*data["trained_spans"][0])]
        assert sample.marked("brackets").endswith(f"⟦{label}⟧\n")
        assert f"[bold green]{label}[/bold green]" in sample.marked("rich")


def _row_messages(row: int) -> list[dict[str, str]]:
    import json

    with (ROOT / "data" / "support.jsonl").open() as f:
        for number, line in enumerate(f, start=1):
            if number == row:
                return json.loads(line)["messages"]
    raise AssertionError(f"no row {row}")
