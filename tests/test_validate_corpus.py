"""A corpus of bad run files, each validated through the real CLI.

Every case is one run file written to runs/x.yaml in the `repo` fixture (plus the repository
files it needs), validated with `tuneform validate --format json runs/x.yaml`, and must exit 1
with the error at the stated line, column and dotted field, its message carrying the stated
fragment (usually the fix). Unless a case says otherwise the error is the file's only one, so
a check that starts reporting noise next to the real problem fails here too.

The fixture's valid run (conftest.RUN), for the line numbers below:

     1 model:
     2   id: HuggingFaceTB/SmolLM2-135M-Instruct
     3   revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2
     4   max_seq_length: 512
     5 data:
     6   train:
     7     - path: data/chat.jsonl
     8 method: {type: lora, r: 8}
     9 training:
    10   num_train_epochs: 1
    11   learning_rate: 1.0e-4
    12 evals:
    13   - suite: evals/intents.yaml
    14     gate: {exact_match: ">= 0.5"}
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import RUN, SETTINGS, Repo, sub

RUN_PATH = "runs/x.yaml"
MODEL_BLOCK = (
    "model:\n  id: HuggingFaceTB/SmolLM2-135M-Instruct\n  revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2\n  max_seq_length: 512\n"
)
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n"
)
SETTINGS_NO_NAMESPACE = '[tool.tuneform]\ndefault_backend = "local"\n'


@dataclass
class Case:
    id: str
    text: str | bytes
    line: int | None
    column: int | None
    field: str | None
    fragment: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    settings: str | None = None  # replaces pyproject.toml
    links: dict[str, Callable[[Path], Path]] = field(default_factory=dict)  # repo path -> target(tmp)
    only: bool = True  # the expected error is the file's only error
    entry: str = RUN_PATH  # which file entry of the JSON carries the error


LAUGHS = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
)

CASES = [
    # --- YAML itself ------------------------------------------------------------------------
    Case("syntax-unclosed-flow", "model:\n  id: [a\n", 3, 1, None, "invalid YAML: did not find expected ',' or ']'"),
    Case("syntax-bad-indent", "model:\n  id: a/b\n revision: main\n", 3, 2, None, "invalid YAML"),
    Case("syntax-tab", "model:\n\tid: a/b\n", 2, 1, None, "invalid YAML: found character that cannot start any token"),
    Case("duplicate-top-key", RUN + "model:\n  id: a/b\n", 15, 1, "model", "duplicate key 'model' (first set on line 1): keep one"),
    Case(
        "duplicate-nested-key",
        sub("  max_seq_length: 512\n", "  max_seq_length: 512\n  max_seq_length: 256\n"),
        5,
        3,
        "model.max_seq_length",
        "duplicate key 'max_seq_length' (first set on line 4): keep one",
    ),
    Case("empty-file", "", 1, 1, None, "the file is empty: a run needs at least model and data"),
    Case("comments-only", "# nothing here\n", 1, 1, None, "the file is empty"),
    Case("top-level-list", "- model: a/b\n- data: x\n", 1, 1, None, "the file holds a list: a run file is a mapping of keys"),
    Case("scalar-document", "support-bot\n", 1, 1, None, "the file holds a single value (str)"),
    Case(
        "python-object-tag-top",
        "!!python/object/apply:os.system ['echo pwned']\n",
        1,
        1,
        None,
        "YAML tag '!!python/object/apply:os.system' is not allowed in a run file",
    ),
    Case(
        "custom-tag",
        sub("max_seq_length: 512", "max_seq_length: !len 512"),
        4,
        19,
        "model.max_seq_length",
        "YAML tag '!len' is not allowed",
    ),
    Case(
        "binary-tag",
        sub("max_seq_length: 512", "max_seq_length: !!binary aGVsbG8="),
        4,
        19,
        "model.max_seq_length",
        "YAML tag '!!binary' is not allowed",
    ),
    Case("set-tag", RUN + "budget: !!set {a, b}\n", 15, 9, "budget", "YAML tag '!!set' is not allowed"),
    Case(
        "verbatim-python-tag",
        sub("revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2", "revision: !<tag:yaml.org,2002:python/name:os.system> x"),
        3,
        13,
        "model.revision",
        "YAML tag '!!python/name:os.system' is not allowed",
    ),
    Case("billion-laughs", LAUGHS, 3, 4, "c[8][1]", "more than 100 alias expansions (*name): write the values out"),
    Case(
        "merge-key",
        "base: &b {id: a/b}\nmodel:\n  <<: *b\n  revision: main\ndata: {train: [{path: data/chat.jsonl}]}\n",
        3,
        3,
        "model",
        "merge keys ('<<') are not supported: write the keys out",
    ),
    Case("multiple-documents", RUN + "---\n" + RUN, 15, 1, None, "more than one YAML document ('---'): a run file holds one"),
    Case("deep-flow-nesting", "a: " + "[" * 200 + "]" * 200 + "\n", 1, 54, "a" + "[0]" * 50, "nesting deeper than 50 levels"),
    Case(
        "deep-block-nesting",
        "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v\n",
        52,
        103,
        ".".join(f"k{i}" for i in range(51)),
        "nesting deeper than 50 levels",
    ),
    Case("over-1-mib", RUN + "# " + "x" * (1024 * 1024) + "\n", None, None, None, "over the 1,048,576-byte limit for a run file"),
    Case(
        "not-utf8",
        RUN.encode() + b"# caf\xe9\n",
        15,
        6,
        None,
        f"file is not UTF-8 text (byte {len(RUN.encode()) + 5}, 0xe9): save it as UTF-8",
    ),
    Case(
        "control-character",
        sub("max_seq_length: 512", "max_seq_length: 5\x0712"),
        4,
        20,
        None,
        "control characters are not allowed (character '\\x07')",
    ),
    # --- unknown keys at every level, with did-you-mean ------------------------------------
    Case("unknown-top", RUN + "trainig: {}\n", 15, 1, "trainig", "unknown key 'trainig': did you mean 'training'?"),
    Case(
        "unknown-model",
        sub("max_seq_length:", "max_seq_len:"),
        4,
        3,
        "model.max_seq_len",
        "unknown key 'max_seq_len': did you mean 'max_seq_length'?",
    ),
    Case(
        "unknown-data",
        sub("  train:\n", "  eval_splt: 0.1\n  train:\n"),
        6,
        3,
        "data.eval_splt",
        "unknown key 'eval_splt': did you mean 'eval_split'?",
    ),
    Case(
        "unknown-source",
        sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n      fromat: messages\n"),
        8,
        7,
        "data.train[0].fromat",
        "unknown key 'fromat': did you mean 'format'?",
    ),
    Case(
        "unknown-method",
        sub("{type: lora, r: 8}", "{type: lora, rank: 8}"),
        8,
        22,
        "method.rank",
        "unknown key 'rank' (expected one of: alpha, beta, dropout, precompute_ref_log_probs, r, target_modules, type, use_rslora)",
    ),
    Case(
        "unknown-training",
        sub("learning_rate:", "lerning_rate:"),
        11,
        3,
        "training.lerning_rate",
        "unknown key 'lerning_rate': did you mean 'learning_rate'?",
    ),
    Case(
        "unknown-compute",
        RUN + "compute: {flavour: a10g-small}\n",
        15,
        11,
        "compute.flavour",
        "unknown key 'flavour': did you mean 'flavor'?",
    ),
    Case(
        "unknown-output",
        RUN + "output: {repository: a/b}\n",
        15,
        10,
        "output.repository",
        "unknown key 'repository' (expected one of: private, repo, save)",
    ),
    Case("unknown-eval", sub("    gate:", "    gates:"), 14, 5, "evals[0].gates", "unknown key 'gates': did you mean 'gate'?"),
    Case(
        "unknown-budget",
        RUN + "budget: {max_dollars: 3}\n",
        15,
        10,
        "budget.max_dollars",
        "unknown key 'max_dollars' (expected one of: max_usd)",
    ),
    # --- types and required keys -----------------------------------------------------------
    Case(
        "wrong-type-number",
        sub("learning_rate: 1.0e-4", "learning_rate: fast"),
        11,
        3,
        "training.learning_rate",
        "input should be a valid number",
    ),
    Case(
        "wrong-type-list-for-int",
        sub("max_seq_length: 512", "max_seq_length: [512]"),
        4,
        3,
        "model.max_seq_length",
        "input should be a valid integer",
    ),
    Case(
        "wrong-type-string-for-section",
        sub(MODEL_BLOCK, "model: HuggingFaceTB/SmolLM2-135M-Instruct\n"),
        1,
        1,
        "model",
        "expected a mapping of keys (id, revision, max_seq_length, load_in_4bit, ...), got a str ('HuggingFaceTB/SmolLM2-135M-Instruct')",
    ),
    Case("wrong-type-empty-section", sub(MODEL_BLOCK, "model:\n"), 1, 1, "model", "got nothing (an empty value)"),
    Case(
        "wrong-type-train-not-list",
        sub("  train:\n    - path: data/chat.jsonl\n", "  train: data/chat.jsonl\n"),
        6,
        3,
        "data.train",
        "input should be a valid list",
    ),
    Case(
        "wrong-type-columns",
        sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n      columns: messages\n"),
        8,
        7,
        "data.train[0].columns",
        "expected a mapping (name: value, ...), got a str ('messages')",
    ),
    Case(
        "boolean-for-number",
        sub("num_train_epochs: 1", "num_train_epochs: yes"),
        10,
        3,
        "training.num_train_epochs",
        "true is a boolean (YAML reads yes/no/on/off/true/false as booleans): write a number",
    ),
    Case(
        "number-for-text",
        sub("revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2", "revision: 1234e56"),
        3,
        3,
        "model.revision",
        "expected text, but YAML read a number (1.234e+59): put the value in quotes",
    ),
    Case("missing-model", "data:\n  train:\n    - path: data/chat.jsonl\n", 1, 1, "model", "missing required key 'model'"),
    Case("missing-data", MODEL_BLOCK, 1, 1, "data", "missing required key 'data'"),
    Case("missing-model-id", sub("  id: HuggingFaceTB/SmolLM2-135M-Instruct\n", ""), 1, 1, "model.id", "missing required key 'id'"),
    Case(
        "bad-model-id",
        sub("HuggingFaceTB/SmolLM2-135M-Instruct", "not a model"),
        2,
        3,
        "model.id",
        "'not a model' is neither a Hub id (owner/name) nor a local path (./models/x)",
    ),
    Case(
        "bad-format",
        sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n      format: mesages\n"),
        8,
        7,
        "data.train[0].format",
        "expected 'messages', 'prompt_completion', 'alpaca', 'text' or 'preference' (did you mean 'messages'?)",
    ),
    Case(
        "source-with-path-and-dataset",
        sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n      dataset: a/b\n"),
        7,
        7,
        "data.train[0]",
        "a data source needs exactly one of 'path' (a file in the repo) or 'dataset' (a Hub dataset)",
    ),
    Case(
        "columns-unknown-field",
        sub("    - path: data/chat.jsonl\n", "    - dataset: a/b\n      max_samples: 10\n      columns: {mesages: conversations}\n"),
        9,
        17,
        "data.train[0].columns.mesages",
        "columns: 'mesages' is not a field of format messages: did you mean 'messages'?",
        only=False,
    ),
    # --- paths -------------------------------------------------------------------------------
    Case(
        "absolute-path",
        sub("path: data/chat.jsonl", "path: /etc/passwd.jsonl"),
        7,
        7,
        "data.train[0].path",
        "'/etc/passwd.jsonl' is absolute: use a path relative to the repository root",
    ),
    Case(
        "dotdot-path",
        sub("path: data/chat.jsonl", "path: data/../../secret.jsonl"),
        7,
        7,
        "data.train[0].path",
        "'data/../../secret.jsonl' leaves its folder with '..': use a path inside the repository",
    ),
    Case(
        "symlink-outside",
        sub("path: data/chat.jsonl", "path: data/link.jsonl"),
        7,
        7,
        "data.train[0].path",
        "'data/link.jsonl' leads outside the repository (through a symlink): use a file inside it",
        links={"data/link.jsonl": lambda tmp: tmp / "outside.jsonl"},
    ),
    Case(
        "missing-data-file",
        sub("path: data/chat.jsonl", "path: data/nope.jsonl"),
        7,
        7,
        "data.train[0].path",
        "'data/nope.jsonl' does not exist: add the file or fix the path (relative to the repository root)",
    ),
    Case(
        "unsupported-suffix",
        sub("path: data/chat.jsonl", "path: data/chat.txt"),
        7,
        7,
        "data.train[0].path",
        "'data/chat.txt' is not a data file tuneform reads: use .jsonl, .json, .csv or .parquet",
        files={"data/chat.txt": "hello\n"},
    ),
    Case(
        "lfs-pointer",
        sub("path: data/chat.jsonl", "path: data/big.jsonl"),
        7,
        7,
        "data.train[0].path",
        "'data/big.jsonl' is a Git LFS pointer, not the data: run 'git lfs pull'",
        files={"data/big.jsonl": LFS_POINTER},
    ),
    # --- evals -------------------------------------------------------------------------------
    Case(
        "missing-eval-suite",
        sub("evals/intents.yaml", "evals/nope.yaml"),
        13,
        5,
        "evals[0].suite",
        "'evals/nope.yaml' does not exist: add the suite or fix the path",
    ),
    Case(
        "eval-suite-bad-row",
        sub("evals/intents.yaml", "evals/bad.yaml"),
        13,
        5,
        "evals[0].suite",
        "eval suite evals/bad.jsonl:3: prompt must be a non-empty string",
        files={
            "evals/bad.yaml": "name: bad\ndata: evals/bad.jsonl\nmetrics: [exact_match]\n",
            "evals/bad.jsonl": '{"id": "a", "prompt": "x", "expected": "y"}\n{"id": "b", "prompt": "y", "expected": "y"}\n'
            '{"id": "c", "prompt": 3, "expected": "y"}\n',
        },
    ),
    Case(
        "gate-metric-not-computed",
        sub("exact_match:", "rouge_l:"),
        14,
        12,
        "evals[0].gate.rouge_l",
        "gate on 'rouge_l', which suite evals/intents.yaml does not compute (expected one of: eval_loss, exact_match, perplexity)",
    ),
    Case("gate-metric-typo", sub("exact_match:", "exact_mach:"), 14, 12, "evals[0].gate.exact_mach", "did you mean 'exact_match'?"),
    Case(
        "bad-gate-syntax",
        sub('">= 0.5"', '"at least 0.5"'),
        14,
        12,
        "evals[0].gate.exact_match",
        "gate exact_match: 'at least 0.5' is not a condition like '>= 0.85' or '< 2.5'",
    ),
    # --- cross-field rules -------------------------------------------------------------------
    Case(
        "eval-split-and-eval-sources",
        sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n  eval:\n    - path: data/chat.jsonl\n  eval_split: 0.1\n"),
        10,
        3,
        "data.eval_split",
        "set either eval_split or eval sources, not both",
    ),
    Case(
        "eval-split-out-of-range",
        sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n  eval_split: 0.7\n"),
        8,
        3,
        "data.eval_split",
        "input should be less than 0.5",
    ),
    Case(
        "max-steps-and-epochs",
        sub("  num_train_epochs: 1\n", "  num_train_epochs: 1\n  max_steps: 10\n"),
        11,
        3,
        "training.max_steps",
        "set either num_train_epochs or max_steps, not both",
    ),
    Case(
        "qlora-with-4bit-off",
        sub("{type: lora, r: 8}", "{type: qlora, r: 8}", "  max_seq_length: 512\n", "  max_seq_length: 512\n  load_in_4bit: false\n"),
        5,
        3,
        "model.load_in_4bit",
        "load_in_4bit: false with method qlora, which is LoRA on a 4-bit base",
    ),
    Case(
        "lora-options-with-full",
        sub("{type: lora, r: 8}", "{type: full, r: 8, alpha: 16}"),
        8,
        22,
        "method.r",
        "r, alpha only apply to lora and qlora: remove them or set type: lora",
    ),
    Case(
        "full-with-save-adapter",
        sub("{type: lora, r: 8}", "{type: full}") + "output: {save: adapter}\n",
        15,
        10,
        "output.save",
        "output.save adapter with method full: a full fine-tune has no adapter, use save: merged",
    ),
    Case(
        "full-with-save-adapter-in-a-list",
        sub("{type: lora, r: 8}", "{type: full}") + "output: {save: [merged, adapter]}\n",
        15,
        10,
        "output.save",
        "output.save adapter with method full: a full fine-tune has no adapter, use save: merged",
    ),
    Case(
        "unknown-gguf-quantization",
        RUN + "output: {save: [adapter, gguf:q4_k_mm]}\n",
        15,
        26,
        "output.save[1]",
        "'q4_k_mm' is not a GGUF quantization tuneform makes: did you mean 'q4_k_m'?",
    ),
    Case(
        "gguf-without-quantization",
        RUN + "output: {save: gguf}\n",
        15,
        10,
        "output.save",
        "'gguf' needs a quantization: write gguf:q4_k_m (or one of f16, bf16, q8_0, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_0, q4_1, q4_k_s, q4_k_m, q5_0, q5_1, q5_k_s, q5_k_m, q6_k)",
    ),
    Case(
        "misspelled-export",
        RUN + "output: {save: [adpater]}\n",
        15,
        17,
        "output.save[0]",
        "'adpater' is not an export: did you mean 'adapter'?",
    ),
    Case(
        "load-in-4bit-with-lora",
        sub("  max_seq_length: 512\n", "  max_seq_length: 512\n  load_in_4bit: true\n"),
        5,
        3,
        "model.load_in_4bit",
        "model.load_in_4bit with method lora: use method.type qlora (LoRA on a 4-bit base)",
    ),
    Case(
        "empty-target-modules",
        sub("{type: lora, r: 8}", "{type: lora, target_modules: []}"),
        8,
        22,
        "method.target_modules",
        "target_modules is empty: list module names or use all-linear",
    ),
    # --- compute, output, name ---------------------------------------------------------------
    Case(
        "unknown-flavor",
        RUN + "compute: {flavor: a10g-larg}\n",
        15,
        11,
        "compute.flavor",
        "unknown flavor 'a10g-larg': did you mean 'a10g-large'?",
    ),
    Case(
        "flavor-not-allowed",
        RUN + "compute: {backend: hf-jobs, flavor: a10g-small}\n",
        15,
        29,
        "compute.flavor",
        "flavor 'a10g-small' is not allowed in this repository (allowed: t4-small, h200): pick one of those or ask an owner to extend [tool.tuneform] allowed_flavors",
        settings=SETTINGS + 'allowed_flavors = ["t4-small", "h200"]\n',
    ),
    Case(
        "trust-remote-code",
        sub("  max_seq_length: 512\n", "  max_seq_length: 512\n  trust_remote_code: true\n"),
        5,
        3,
        "model.trust_remote_code",
        "HuggingFaceTB/SmolLM2-135M-Instruct may not run remote code here: list it in [tool.tuneform] trust_remote_code",
    ),
    Case(
        "bad-timeout",
        RUN + "compute: {timeout: 90 minutes}\n",
        15,
        11,
        "compute.timeout",
        "'90 minutes' is not a duration: use seconds or a number with s, m, h or d (90m, 2h)",
    ),
    Case("timeout-too-short", RUN + "compute: {timeout: 10s}\n", 15, 11, "compute.timeout", "use at least 1m"),
    Case(
        "timeout-boolean",
        RUN + "compute: {timeout: yes}\n",
        15,
        11,
        "compute.timeout",
        "true is a boolean, not a duration (YAML reads yes/no/on/off as booleans): write 90m, 2h or seconds",
    ),
    Case(
        "bad-backend",
        RUN + "compute: {backend: hfjobs}\n",
        15,
        11,
        "compute.backend",
        "expected 'local' or 'hf-jobs' (did you mean 'hf-jobs'?)",
    ),
    Case(
        "bad-output-repo",
        RUN + "output: {repo: not-a-repo}\n",
        15,
        10,
        "output.repo",
        "'not-a-repo' is not a Hub repo id: use namespace/name",
    ),
    Case(
        "bad-name-slug",
        "name: Support Bot\n" + RUN,
        1,
        1,
        "name",
        "'Support Bot' is not a slug: use lowercase letters, digits, '-', '_' or '.'",
    ),
    Case(
        "hf-jobs-without-repo-or-namespace",
        RUN + "compute: {backend: hf-jobs}\n",
        1,
        1,
        "output",
        "backend hf-jobs publishes to the Hub: set output.repo (namespace/name) or [tool.tuneform] namespace",
        settings=SETTINGS_NO_NAMESPACE,
    ),
    Case(
        "over-budget",
        RUN + "compute: {backend: hf-jobs}\nbudget: {max_usd: 0.0001}\n",
        16,
        10,
        "budget.max_usd",
        "is over budget.max_usd ($0.0001): shorten the run (max_steps, max_samples), pick a cheaper flavor, or raise the cap",
    ),
    Case(
        "forced-flavor-too-small",
        sub("HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-7B-Instruct", "{type: lora, r: 8}", "{type: full}")
        + "compute: {backend: hf-jobs, flavor: t4-small}\n",
        15,
        29,
        "compute.flavor",
        "Smallest allowed flavor that fits: h200",
        settings=SETTINGS + 'allowed_flavors = ["t4-small", "h200"]\n',
    ),
    Case(
        "unknown-tracker",
        sub("  learning_rate: 1.0e-4\n", "  learning_rate: 1.0e-4\n  report_to: wandbb\n"),
        12,
        3,
        "training.report_to",
        "did you mean 'wandb'?",
    ),
    Case(
        "tracker-without-its-secrets-on-hf-jobs",
        sub("  learning_rate: 1.0e-4\n", "  learning_rate: 1.0e-4\n  report_to: mlflow\n") + "compute: {backend: hf-jobs}\n",
        12,
        3,
        "training.report_to",
        '[tool.tuneform.tracker_secrets] mlflow = ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"]',
    ),
    # --- repository settings -----------------------------------------------------------------
    Case(
        "bad-tool-tuneform",
        RUN,
        None,
        None,
        "tool.tuneform.alowed_flavors",
        "[tool.tuneform] unknown key 'alowed_flavors': did you mean 'allowed_flavors'?",
        settings=SETTINGS + 'alowed_flavors = ["a10g-small"]\n',
        entry="pyproject.toml",
    ),
    *(
        Case(
            f"tracker-secret-{name}",
            RUN,
            None,
            None,
            "tool.tuneform.tracker_secrets",
            fragment,
            settings=SETTINGS + f'[tool.tuneform.tracker_secrets]\nwandb = ["{name}"]\n',
            entry="pyproject.toml",
        )
        for name, fragment in (
            ("wandb-key", "'wandb-key' is not an environment variable name"),
            ("HF_TOKEN", "lists HF_TOKEN, which every job gets already"),
            ("GITHUB_TOKEN", "GITHUB_TOKEN is the CI runner's own variable: a job never gets it"),
        )
    ),
]


def _prepare(repo: Repo, case: Case) -> None:
    if case.settings is not None:
        repo.write("pyproject.toml", case.settings)
    for rel, content in case.files.items():
        repo.write(rel, content)
    for rel, target in case.links.items():
        destination = target(repo.path.parent)
        destination.write_text('{"text": "outside the repository"}\n')
        os.symlink(destination, repo.path / rel)
    repo.write(RUN_PATH, case.text)


def test_corpus_is_large_and_distinct() -> None:
    assert len(CASES) >= 35
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.text if isinstance(c.text, bytes) else c.text.encode() for c in CASES if not c.settings}) == len(
        [c for c in CASES if not c.settings]
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_run_file(repo: Repo, case: Case) -> None:
    _prepare(repo, case)
    code, out = repo.json("validate", "--format", "json", RUN_PATH)
    assert code == 1, out
    assert out["ok"] is False
    entries = {f["path"]: f for f in out["files"]}
    entry = entries[case.entry]
    assert entry["ok"] is False
    errors = entry["errors"]
    matching = [e for e in errors if e["field"] == case.field and case.fragment in e["message"]]
    assert matching, f"no error on {case.field!r} containing {case.fragment!r} in {json.dumps(errors, indent=1)}"
    assert (matching[0]["line"], matching[0]["column"]) == (case.line, case.column), matching[0]
    if case.only:
        assert len(errors) == 1, json.dumps(errors, indent=1)
    if case.entry != RUN_PATH:  # a settings problem does not make the run file itself invalid
        assert entries[RUN_PATH]["ok"] is True


# --------------------------------------------------------------------------------------------
# Tags are never constructed: a payload that creates a file does not create it.


def test_python_tag_that_would_create_a_file_creates_nothing(repo: Repo, tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    payload = f"!!python/object/apply:builtins.open [{json.dumps(str(target))}, 'w']"
    # The control: an unsafe loader really does create the file from this payload...
    control = tmp_path / "control.txt"
    yaml.unsafe_load(payload.replace(str(target), str(control))).close()
    assert control.exists()
    # ...and tuneform, at the top level or nested in a valid run, reports the tag and creates nothing.
    for text, line, column, fld in [
        (payload + "\n", 1, 1, None),
        (sub("revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2", f"revision: {payload}"), 3, 13, "model.revision"),
    ]:
        repo.write(RUN_PATH, text)
        code, out = repo.json("validate", "--format", "json", RUN_PATH)
        assert code == 1
        [error] = {f["path"]: f for f in out["files"]}[RUN_PATH]["errors"]
        assert (error["line"], error["column"], error["field"]) == (line, column, fld)
        assert error["message"].startswith("YAML tag '!!python/object/apply:builtins.open' is not allowed in a run file")
        assert not target.exists()
    assert not list(repo.path.rglob("pwned*"))


# --------------------------------------------------------------------------------------------
# Output formats


def test_text_format_is_compiler_style(repo: Repo) -> None:
    repo.write(RUN_PATH, sub("learning_rate:", "lerning_rate:"))
    result = repo.cli("validate", RUN_PATH)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "runs/x.yaml:11:3: error: training.lerning_rate: unknown key 'lerning_rate': did you mean 'learning_rate'?",
        "1 file(s) checked, 1 invalid",
    ]


def test_text_format_lines_without_field_or_position(repo: Repo) -> None:
    repo.write(RUN_PATH, RUN.encode() + b"\xff")
    repo.write("runs/y.yaml", "- a\n")
    result = repo.cli("validate", "--format", "text", RUN_PATH, "runs/y.yaml", "runs/missing.yaml")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"runs/x.yaml:15:1: error: file is not UTF-8 text (byte {len(RUN.encode())}, 0xff): save it as UTF-8",
        "runs/y.yaml:1:1: error: the file holds a list: a run file is a mapping of keys (model:, data:, ...)",
        "runs/missing.yaml: error: no such file or folder: pass run files or folders in the repository (default runs/)",
        "2 file(s) checked, 2 invalid",
    ]


def test_text_format_shows_over_budget(repo: Repo) -> None:
    repo.write(RUN_PATH, RUN + "compute: {backend: hf-jobs}\nbudget: {max_usd: 0.0001}\n")
    result = repo.cli("validate", RUN_PATH)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("runs/x.yaml:16:10: error: budget.max_usd: estimated $")
    assert lines[0].endswith(
        " is over budget.max_usd ($0.0001): shorten the run (max_steps, max_samples), pick a cheaper flavor, or raise the cap"
    )
    assert lines[1] == "1 file(s) checked, 1 invalid"


def test_github_format_annotations(repo: Repo) -> None:
    repo.write(RUN_PATH, sub("learning_rate:", "lerning_rate:"))
    result = repo.cli("validate", "--format", "github", RUN_PATH)
    assert result.exit_code == 1
    assert result.output == (
        "::error file=runs/x.yaml,line=11,col=3,title=training.lerning_rate::unknown key 'lerning_rate': did you mean 'learning_rate'?\n"
    )


def test_github_format_escapes_properties_and_data(repo: Repo) -> None:
    # A file name with ',' and ':' and a key with ':', ',', '%' and a newline: properties escape
    # all four, the message escapes '%' and the newline only.
    path = "runs/a,b:c.yaml"
    repo.write(path, "name: ok\n" + RUN + '"lr: 50%, x\\ny": 1\n')
    result = repo.cli("validate", "--format", "github", path)
    assert result.exit_code == 1
    assert result.output == (
        "::error file=runs/a%2Cb%3Ac.yaml,line=16,col=1,title=lr%3A 50%25%2C x%0Ay::"
        "unknown key 'lr: 50%25, x%0Ay' (expected one of: budget, compute, data, evals, method, model, name, output, training)\n"
    )


def test_github_format_settings_and_warning(repo: Repo) -> None:
    repo.write("pyproject.toml", SETTINGS + "alowed_flavors = []\n")
    repo.write(RUN_PATH, sub("revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2", "revision: main"))
    result = repo.cli("validate", "--format", "github", RUN_PATH)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "::warning file=runs/x.yaml,line=3,col=3,title=model.revision::could not resolve 'main' of "
        "HuggingFaceTB/SmolLM2-135M-Instruct to a commit (offline (HF_HUB_OFFLINE)): the run key uses the name as written; pin a commit SHA",
        "::error file=pyproject.toml,title=tool.tuneform.alowed_flavors::[tool.tuneform] unknown key 'alowed_flavors': did you mean 'allowed_flavors'?",
    ]


def test_github_format_over_budget(repo: Repo) -> None:
    repo.write(RUN_PATH, RUN + "compute: {backend: hf-jobs}\nbudget: {max_usd: 0.0001}\n")
    result = repo.cli("validate", "--format", "github", RUN_PATH)
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith("::error file=runs/x.yaml,line=16,col=10,title=budget.max_usd::estimated $")


# --------------------------------------------------------------------------------------------
# Good cases and arguments


def _paths(out: dict[str, Any]) -> list[str]:
    return [f["path"] for f in out["files"]]


def test_valid_run_passes(repo: Repo) -> None:
    code, out = repo.json("validate", "--format", "json", "runs/support.yaml")
    assert code == 0
    assert out == {"files": [{"path": "runs/support.yaml", "ok": True, "errors": [], "warnings": []}], "ok": True}
    result = repo.cli("validate", "runs/support.yaml")
    assert (result.exit_code, result.output) == (0, "1 file(s) checked, 0 invalid\n")
    result = repo.cli("validate", "--format", "github", "runs/support.yaml")
    assert (result.exit_code, result.output) == (0, "")


def test_default_and_directory_arguments(repo: Repo) -> None:
    repo.write("runs/team/extra.yml", RUN)
    for args in ([], ["runs"], ["runs/"], ["."]):
        code, out = repo.json("validate", "--format", "json", *args)
        assert code == 0, (args, out)
        assert _paths(out) == ["runs/support.yaml", "runs/team/extra.yml"], args
    code, out = repo.json("validate", "--format", "json", "runs/team")
    assert (code, _paths(out)) == (0, ["runs/team/extra.yml"])
    # one bad file among good ones fails the whole validation, and only that file is marked
    repo.write("runs/team/bad.yaml", "model: {id: a/b}\n")
    code, out = repo.json("validate", "--format", "json")
    assert code == 1
    assert [(f["path"], f["ok"]) for f in out["files"]] == [
        ("runs/support.yaml", True),
        ("runs/team/bad.yaml", False),
        ("runs/team/extra.yml", True),
    ]


def test_missing_argument_is_reported_under_its_own_name(repo: Repo) -> None:
    code, out = repo.json("validate", "--format", "json", "runs/support.yaml", "nope.yaml")
    assert code == 1
    assert out["files"] == [
        {"path": "runs/support.yaml", "ok": True, "errors": [], "warnings": []},
        {
            "path": "nope.yaml",
            "ok": False,
            "warnings": [],
            "errors": [
                {
                    "line": None,
                    "column": None,
                    "field": None,
                    "message": "no such file or folder: pass run files or folders in the repository (default runs/)",
                }
            ],
        },
    ]


def test_usage_errors_exit_2(repo: Repo) -> None:
    result = repo.cli("validate", "--bogus")
    assert result.exit_code == 2
    assert "No such option: --bogus" in result.output or "No such option '--bogus'" in result.output
    result = repo.cli("validate", "--format", "xml")
    assert result.exit_code == 2
    assert "'xml' is not one of 'text', 'json', 'github'" in result.output


def test_unknown_target_module_is_reported_not_raised(repo: Repo) -> None:
    # c_attn is a real module name (GPT-2); the schema accepts any names, the estimator knows Llama-style ones.
    repo.write(RUN_PATH, sub("{type: lora, r: 8}", "{type: lora, r: 8, target_modules: [c_attn]}"))
    code, out = repo.json("validate", "--format", "json", RUN_PATH)
    assert code in (0, 1)
    problems = [p for f in out["files"] for p in f["errors"] + f["warnings"] if "c_attn" in p["message"]]
    assert problems and all(p["field"] == "method.target_modules" and p["line"] == 8 for p in problems), problems


def test_qlora_on_local_cpu_names_the_real_reason(repo: Repo) -> None:
    repo.write(RUN_PATH, sub("{type: lora, r: 8}", "{type: qlora, r: 8}"))
    code, out = repo.json("validate", "--format", "json", RUN_PATH)
    for error in out["files"][0]["errors"]:
        numbers = re.search(r"has ([\d.]+) GiB but the run needs about ([\d.]+) GiB", error["message"])
        assert not (numbers and float(numbers.group(2)) < float(numbers.group(1))), error
