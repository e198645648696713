"""The run key: same key, same model (DESIGN: "Run key").

The key must survive everything that does not change what is trained (formatting, the file's
name and path, evals, budget, compute, where the model is published) and change with everything
that does (hyperparameters, data bytes, model revision, what is saved). Keys are read through
`tuneform plan --format json` (what scripts and the registry see) and, for the many
reformatting variants, through check_run on the same repository.

Also here: `tuneform schema`, a JSON Schema that editors validate run files with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from conftest import RUN, SETTINGS, Repo, sub
from tuneform.plan.runcheck import check_run
from tuneform.runfile import yamlsafe
from tuneform.runfile.resolve import HubResolver
from tuneform.runfile.settings import parse_settings, settings_or_defaults
from tuneform.runfile.spec import load_run_text
from tuneform.runfile.trees import WorkTree

HEX64 = re.compile(r"^[0-9a-f]{64}$")
SHA = "93efa2f097d58c2a74874c7e644dbc9b0cee75a2"
OTHER_SHA = "0123456789abcdef0123456789abcdef01234567"


def plan_key(repo: Repo, text: str, path: str = "runs/support.yaml") -> str:
    """The run key `tuneform plan` reports for `text` written at `path`."""
    repo.write(path, text)
    code, out = repo.json("plan", "--format", "json", "--offline", path)
    [run] = [r for r in out["runs"] if r["path"] == path]
    assert run["errors"] == [], run["errors"]
    assert code == 0, out
    return run["run_key"]


def check_key(repo: Repo, text: str, path: str = "runs/support.yaml") -> str:
    """The run key of `text` as check_run computes it in the repo's working tree."""
    result = check_run(WorkTree(repo.path), path, parse_settings(SETTINGS), HubResolver(offline=True), text=text.encode())
    assert result.ok, [p.message for p in result.errors]
    assert result.key is not None
    return result.key


# --------------------------------------------------------------------------------------------
# Stable


REFORMATTED = {
    "comments": "# the support bot\n"
    + sub("  max_seq_length: 512\n", "  max_seq_length: 512   # fits every row\n", "training:\n", "# hyperparameters\ntraining:\n"),
    "key order": (
        "training:\n  learning_rate: 1.0e-4\n  num_train_epochs: 1\n"
        'evals:\n  - gate: {exact_match: ">= 0.5"}\n    suite: evals/intents.yaml\n'
        "method: {r: 8, type: lora}\n"
        "data:\n  train:\n    - path: data/chat.jsonl\n"
        f"model:\n  max_seq_length: 512\n  revision: {SHA}\n  id: HuggingFaceTB/SmolLM2-135M-Instruct\n"
    ),
    "flow style": (
        f"{{model: {{id: HuggingFaceTB/SmolLM2-135M-Instruct, revision: {SHA}, max_seq_length: 512}},\n"
        " data: {train: [{path: data/chat.jsonl}]}, method: {type: lora, r: 8},\n"
        " training: {num_train_epochs: 1, learning_rate: 1.0e-4},\n"
        " evals: [{suite: evals/intents.yaml, gate: {exact_match: '>= 0.5'}}]}\n"
    ),
    "block style": sub(
        "method: {type: lora, r: 8}\n",
        "method:\n  type: lora\n  r: 8\n",
        '    gate: {exact_match: ">= 0.5"}\n',
        "    gate:\n      exact_match: '>=   0.5'\n",
    ),
    "quoting": sub(
        "id: HuggingFaceTB/SmolLM2-135M-Instruct",
        'id: "HuggingFaceTB/SmolLM2-135M-Instruct"',
        f"revision: {SHA}",
        f"revision: '{SHA}'",
        "path: data/chat.jsonl",
        'path: "data/chat.jsonl"',
        "{type: lora, r: 8}",
        "{type: 'lora', r: 8}",
    ),
    "quoted number": sub("learning_rate: 1.0e-4", 'learning_rate: "1.0e-4"'),
    "1e-4": sub("learning_rate: 1.0e-4", "learning_rate: 1e-4"),
    "0.0001": sub("learning_rate: 1.0e-4", "learning_rate: 0.0001"),
    "10E-5": sub("learning_rate: 1.0e-4", "learning_rate: 10E-5"),
    "1.0 epochs": sub("num_train_epochs: 1", "num_train_epochs: 1.0"),
    "explicit defaults": sub(
        "  max_seq_length: 512\n",
        "  max_seq_length: 512\n  load_in_4bit: false\n  trust_remote_code: false\n  chat_template: null\n",
        "    - path: data/chat.jsonl\n",
        "    - path: data/chat.jsonl\n      format: messages\n      columns: {}\n  eval_split: 0.05\n  max_bad_rows: 0.01\n",
        "{type: lora, r: 8}",
        "{type: lora, r: 8, alpha: 8, dropout: 0.0, target_modules: all-linear, use_rslora: false}",
        "  learning_rate: 1.0e-4\n",
        "  learning_rate: 1.0e-4\n  per_device_train_batch_size: auto\n  gradient_accumulation_steps: 1\n  packing: true\n"
        "  train_on: responses\n  seed: 3407\n  lr_scheduler_type: linear\n  warmup_ratio: 0.0\n  precision: auto\n  optim: auto\n",
    )
    + "output: {save: adapter}\n",
    "evals changed": sub('{exact_match: ">= 0.5"}', '{exact_match: ">= 0.9", eval_loss: "< 3"}'),
    "evals removed": RUN[: RUN.index("evals:")],
    "budget": RUN + "budget: {max_usd: 15}\n",
    "compute": RUN + "compute: {backend: hf-jobs, flavor: a10g-small, engine: unsloth, timeout: 2h, image: some/image:tag}\n",
    "output repo and private": RUN + "output: {repo: someone/else, private: false}\n",
    "save as a one-item list": RUN + "output: {save: [adapter]}\n",
    "name": "name: another-name\n" + RUN,
    # A tracker only says where the curves go: the same model trains, and a run file written
    # before report_to existed (none, by default) keeps its key.
    "tracker": sub("  learning_rate: 1.0e-4\n", "  learning_rate: 1.0e-4\n  report_to: tensorboard\n"),
    "explicit no tracker": sub("  learning_rate: 1.0e-4\n", "  learning_rate: 1.0e-4\n  report_to: none\n"),
}


@pytest.fixture
def base_key(repo: Repo) -> str:
    key = plan_key(repo, "# touched\n" + RUN)
    assert HEX64.match(key), key
    assert check_key(repo, RUN) == key
    return key


@pytest.mark.parametrize("variant", REFORMATTED, ids=list(REFORMATTED))
def test_key_is_stable(repo: Repo, base_key: str, variant: str) -> None:
    text = REFORMATTED[variant]
    assert text != RUN
    assert check_key(repo, text) == base_key


@pytest.mark.parametrize("variant", ["key order", "flow style", "explicit defaults", "compute", "name", "tracker"])
def test_key_is_stable_through_plan(repo: Repo, base_key: str, variant: str) -> None:
    assert plan_key(repo, REFORMATTED[variant]) == base_key


def test_renamed_file_keeps_its_key(repo: Repo, base_key: str) -> None:
    (repo.path / "runs/support.yaml").unlink()
    assert plan_key(repo, RUN, "runs/renamed-support.yaml") == base_key
    assert plan_key(repo, RUN, "runs/nested/deeper/bot.yml") == base_key


def test_moved_data_file_with_same_bytes_keeps_its_key(repo: Repo, base_key: str) -> None:
    data = (repo.path / "data/chat.jsonl").read_bytes()
    repo.write("datasets/v2/support-chat.jsonl", data)
    (repo.path / "data/chat.jsonl").unlink()
    assert plan_key(repo, sub("path: data/chat.jsonl", "path: datasets/v2/support-chat.jsonl")) == base_key


# --------------------------------------------------------------------------------------------
# Changes


CHANGED = {
    "learning_rate": sub("learning_rate: 1.0e-4", "learning_rate: 2.0e-4"),
    "seed": sub("  learning_rate: 1.0e-4\n", "  learning_rate: 1.0e-4\n  seed: 3408\n"),
    "method r": sub("{type: lora, r: 8}", "{type: lora, r: 16, alpha: 8}"),  # alpha pinned: only r moves
    "lora alpha": sub("{type: lora, r: 8}", "{type: lora, r: 8, alpha: 16}"),
    "method type": sub("{type: lora, r: 8}", "{type: full}"),
    "max_seq_length": sub("max_seq_length: 512", "max_seq_length: 1024"),
    "model revision": sub(f"revision: {SHA}", f"revision: {OTHER_SHA}"),
    "model id": sub("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct"),
    "output.save": RUN + "output: {save: merged}\n",
    "output.save list": RUN + "output: {save: [adapter, merged]}\n",
    "output.save gguf": RUN + "output: {save: [adapter, gguf:q4_k_m]}\n",
    "output.save other gguf": RUN + "output: {save: [adapter, gguf:q8_0]}\n",
    "format": sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n      format: text\n      columns: {text: messages}\n"),
    "columns": sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n      columns: {messages: conversations}\n"),
    "eval_split": sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n  eval_split: 0.1\n"),
    "epochs": sub("num_train_epochs: 1", "num_train_epochs: 2"),
    "max_steps instead of epochs": sub("num_train_epochs: 1", "max_steps: 100"),
    "train_on": sub("  learning_rate: 1.0e-4\n", "  learning_rate: 1.0e-4\n  train_on: all\n"),
    "max_samples": sub("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n      max_samples: 10\n"),
}


def test_changes_change_the_key(repo: Repo, base_key: str) -> None:
    keys = {"base": base_key}
    for what, text in CHANGED.items():
        # format and columns name fields chat.jsonl lacks: validate rejects them (the job would), the key still moves
        key = check_key(repo, text) if what not in ("format", "columns") else _key_ignoring_sizing(repo, text)
        assert HEX64.match(key)
        assert key != base_key, f"changing {what} kept the key"
        keys[what] = key
    assert len(set(keys.values())) == len(keys), "two different changes gave the same key"


# Keys the code computed before output.save took a list (main at 43e7783): a run file that writes
# one export, or none, must keep the key it had, or every published version would retrain.
KEYS_BEFORE_EXPORT_LISTS = {
    "default (adapter)": (RUN, "f71c3cb7f5fe2f5b9801639d28258d954b140b55c6b4a0e9b662b67742173820"),
    "save: adapter": (RUN + "output: {save: adapter}\n", "f71c3cb7f5fe2f5b9801639d28258d954b140b55c6b4a0e9b662b67742173820"),
    "save: merged": (RUN + "output: {save: merged}\n", "3bd7dd2b93a7313ae20b8a2d4e2cca0eb458aa8ab2113d2fcae3e2de315ccfa5"),
}


@pytest.mark.parametrize("variant", KEYS_BEFORE_EXPORT_LISTS, ids=list(KEYS_BEFORE_EXPORT_LISTS))
def test_single_export_keeps_the_key_it_had(repo: Repo, variant: str) -> None:
    text, key = KEYS_BEFORE_EXPORT_LISTS[variant]
    assert check_key(repo, text) == key


def test_demo_run_keeps_its_key() -> None:
    """runs/demo.yaml (a full fine-tune saving merged weights) as main computed it before."""
    root = Path(__file__).resolve().parents[1]
    tree = WorkTree(root)
    result = check_run(tree, "runs/demo.yaml", settings_or_defaults(tree), HubResolver(offline=True))
    assert result.key == "05278b75ded57ef5804781acd02e9412aa2cd5de23e289c48cd4eefeccbece62"


@pytest.mark.parametrize(
    ("written", "same_as"),
    [
        ("[merged, adapter]", "[adapter, merged]"),
        ("[adapter, merged, adapter]", "[adapter, merged]"),
        ("[gguf:q8_0, merged, adapter, GGUF:Q4_K_M]", "[adapter, merged, gguf:q4_k_m, gguf:q8_0]"),
        ("gguf:q8_0", "[adapter, gguf:q8_0]"),  # the adapter is always saved: the evals score it
    ],
)
def test_export_lists_are_order_free(repo: Repo, written: str, same_as: str) -> None:
    assert check_key(repo, RUN + f"output: {{save: {written}}}\n") == check_key(repo, RUN + f"output: {{save: {same_as}}}\n")


def _key_ignoring_sizing(repo: Repo, text: str) -> str:
    result = check_run(WorkTree(repo.path), "runs/support.yaml", parse_settings(SETTINGS), HubResolver(offline=True), text=text.encode())
    assert result.key is not None, [p.message for p in result.errors]
    return result.key


def test_learning_rate_change_through_plan(repo: Repo, base_key: str) -> None:
    assert plan_key(repo, CHANGED["learning_rate"]) != base_key


def test_one_byte_of_data_changes_the_key(repo: Repo, base_key: str) -> None:
    path = repo.path / "data/chat.jsonl"
    data = path.read_bytes()
    flipped = data.replace(b"billing", b"Billing", 1)
    assert len(flipped) == len(data) and flipped != data
    path.write_bytes(flipped)
    changed = plan_key(repo, "# touched\n" + RUN)
    assert changed != base_key
    path.write_bytes(data)
    assert plan_key(repo, "# touched again\n" + RUN) == base_key


def test_copy_of_data_under_two_paths_keeps_the_key_per_content(repo: Repo, base_key: str) -> None:
    """Two runs naming different paths with the same bytes share a key; different bytes do not."""
    repo.write("data/copy.jsonl", (repo.path / "data/chat.jsonl").read_bytes())
    repo.write("data/other.jsonl", (repo.path / "data/chat.jsonl").read_bytes() + b"\n")
    assert check_key(repo, sub("path: data/chat.jsonl", "path: data/copy.jsonl")) == base_key
    assert check_key(repo, sub("path: data/chat.jsonl", "path: data/other.jsonl")) != base_key


def test_key_shape(repo: Repo, base_key: str) -> None:
    assert len(base_key) == 64 and base_key == base_key.lower() and HEX64.match(base_key)
    code, out = repo.json("plan", "--format", "json", "--offline", "runs/support.yaml")
    assert out["runs"][0]["run_key"] == base_key


# --------------------------------------------------------------------------------------------
# JSON Schema


@pytest.fixture(scope="module")
def schema() -> dict:
    from click.testing import CliRunner

    from tuneform.cli.commands import main

    result = CliRunner().invoke(main, ["schema"], catch_exceptions=False)
    assert result.exit_code == 0
    return json.loads(result.output)


def test_schema_is_valid_draft_2020_12(schema: dict) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)  # raises SchemaError when it is not


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


VALID_FOR_TUNEFORM = {
    "fixture run": RUN,
    **{f"reformatted: {k}": v for k, v in REFORMATTED.items() if k not in ("quoted number",)},
    "hub dataset": sub(
        "    - path: data/chat.jsonl\n",
        "    - dataset: mlabonne/FineTome-100k\n      revision: main\n      split: train\n      columns: {messages: conversations}\n",
    ),
    "timeout as a duration": RUN + "compute: {timeout: 90m}\n",
    "timeout in seconds": RUN + "compute: {timeout: 5400}\n",
    "gate as a bare number": sub('{exact_match: ">= 0.5"}', "{exact_match: 0.5}"),
    "qlora": sub("{type: lora, r: 8}", "{type: qlora, r: 16, target_modules: [q_proj, v_proj]}"),
    "full": sub("{type: lora, r: 8}", "{type: full}") + "output: {save: merged}\n",
    "exports as a list": RUN + "output: {save: [adapter, merged, gguf:q4_k_m, gguf:q8_0]}\n",
    "one gguf export": RUN + "output: {save: gguf:bf16}\n",
    "exports in capitals": RUN + "output: {save: [Adapter, GGUF:Q4_K_M]}\n",
}


@pytest.mark.parametrize("name", VALID_FOR_TUNEFORM, ids=list(VALID_FOR_TUNEFORM))
def test_valid_runs_validate_against_the_schema(schema: dict, name: str) -> None:
    text = VALID_FOR_TUNEFORM[name]
    assert load_run_text(text, "runs/x.yaml").spec is not None  # tuneform accepts it...
    errors = [e.message for e in _validator(schema).iter_errors(yamlsafe.load(text).data)]
    assert errors == []  # ...so an editor using the schema must not flag it


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (sub("learning_rate:", "lerning_rate:"), "'lerning_rate' was unexpected"),
        (RUN + "trainig: {}\n", "'trainig' was unexpected"),
        (sub("{type: lora, r: 8}", "{type: lorra}"), "'lorra' is not one of ['lora', 'qlora', 'full', 'dpo', 'orpo', 'kto']"),
        (sub("max_seq_length: 512", "max_seq_length: 8"), "8 is less than the minimum of 16"),
        ("data:\n  train: [{path: data/chat.jsonl}]\n", "'model' is a required property"),
        (RUN + "compute: {timeout: soon}\n", "'soon' is not valid under any of the given schemas"),
    ],
)
def test_invalid_runs_fail_the_schema(schema: dict, text: str, fragment: str) -> None:
    messages = [e.message for e in _validator(schema).iter_errors(yamlsafe.load(text).data)]
    assert any(fragment in m for m in messages), messages


def test_hub_revision_is_resolved_to_a_commit_when_the_hub_answers(repo: Repo, fake_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A branch name in model.revision enters the key as the commit it points at, and the plan
    says to pin it; when the branch moves, the key moves with it."""
    from fakehub import USER_TOKEN

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_TOKEN", USER_TOKEN)
    fake_hub.add_repo("acme/base", {"config.json": "{}"})
    repo.write(
        "runs/support.yaml",
        sub("HuggingFaceTB/SmolLM2-135M-Instruct", "acme/base", "revision: 93efa2f097d58c2a74874c7e644dbc9b0cee75a2", "revision: main"),
    )
    code, first = repo.json("plan", "runs/support.yaml", "--format", "json")
    [run] = first["runs"]
    sha = fake_hub.repo("acme/base").resolve("main")
    assert any(f"pin revision: {sha}" in w["message"] for w in run["warnings"]), run["warnings"]
    fake_hub.add_commit("acme/base", {"config.json": '{"changed": true}'})
    code, second = repo.json("plan", "runs/support.yaml", "--format", "json")
    assert second["runs"][0]["run_key"] != run["run_key"]  # same file, new upstream commit, new key
    offline = repo.json("plan", "runs/support.yaml", "--format", "json", "--offline")[1]["runs"][0]
    assert any("could not resolve 'main'" in w["message"] for w in offline["warnings"])
