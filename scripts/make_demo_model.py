#!/usr/bin/env python3
"""Build the tiny offline demo model `models/demo-tiny/`, deterministically.

Why this exists: `make demo` must show a real fine-tune on a laptop CPU with no
GPU and no network, so nothing can come from the Hugging Face Hub. Like TRL's
own tests, the demo uses a tiny *random-initialised* model of a real
architecture (Llama: `LlamaConfig` + `LlamaForCausalLM`, ~1M parameters, 4 MB of
safetensors) and a byte-level BPE tokenizer trained offline with the
`tokenizers` library on the demo's training data. Because the weights are
random, the base model scores ~0 on the demo eval, and whatever it scores after
training was learned in the demo's own minute of CPU training.

The folder loads with the ordinary APIs (`AutoModelForCausalLM`,
`AutoTokenizer`), has a ChatML-style chat template with `{% generation %}`
markers (so TRL's `assistant_only_loss` trains exactly the assistant content
plus its end-of-turn token), and `eos_token` is the end-of-turn token
`<|im_end|>`, so generation stops at the end of the assistant's answer.

Determinism: seeds are fixed, the tokenizer is trained single-threaded on a
fixed corpus order, and nothing written carries a timestamp, so two runs (with
the same library versions) produce byte-identical files; check with
`sha256sum models/demo-tiny/*`.

Usage:
    python scripts/make_demo_model.py [--out models/demo-tiny] [--data data/support.jsonl]

Needs: torch, transformers, tokenizers (the `train` extra). Run
scripts/make_demo_data.py first if data/support.jsonl is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

# The BPE trainer parallelises with rayon. Its output was identical across runs
# with the default thread count too (tokenizers 0.23); one thread is belt and
# braces for merge tie-breaking. Must be set before `tokenizers` is imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEED = 0

PAD = "<|pad|>"
BOS = "<|startoftext|>"
EOT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOT, IM_START, IM_END]  # ids 0..4, in this order

# ChatML. Each assistant turn's content and its <|im_end|> sit inside
# {% generation %} so that `return_assistant_tokens_mask` (TRL's
# assistant_only_loss) marks exactly those tokens as trained; the newline after
# <|im_end|> is outside (it is never generated: eos stops generation first).
CHAT_TEMPLATE = r"""{{- bos_token }}
{%- for message in messages %}
    {%- if message['role'] == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}
        {%- generation %}
            {{- message['content'] + '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\n' }}
    {%- else %}
        {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def read_corpus(path: Path) -> list[str]:
    """Texts to train the BPE on: every message's role and content, in file order."""
    texts: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for message in row["messages"]:
                texts.append(message["role"])  # the template writes role names too
                texts.append(message["content"])
    return texts


def build_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        extra_special_tokens=[EOT, IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
        padding_side="left",  # batched generation pads on the left
        clean_up_tokenization_spaces=False,
    )


def build_model(tokenizer, args):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        num_key_value_heads=args.num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=16,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the tiny offline demo model (see the module docstring).")
    parser.add_argument("--out", type=Path, default=Path("models/demo-tiny"))
    parser.add_argument("--data", type=Path, default=Path("data/support.jsonl"), help="corpus for the BPE tokenizer")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--intermediate-size", type=int, default=384)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    args = parser.parse_args()

    tokenizer = build_tokenizer(read_corpus(args.data), args.vocab_size)
    model = build_model(tokenizer, args)

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    tokenizer.save_pretrained(args.out)
    model.save_pretrained(args.out)
    for path in args.out.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; keep the folder uniform

    n_params = sum(p.numel() for p in model.parameters())
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out}: {n_params:,} parameters, vocab {len(tokenizer)}, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
