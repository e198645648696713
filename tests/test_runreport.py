"""The run report: markdown for PR comments, terminal text, JSON, and the loss chart in text and PNG."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tuneform.core.manifest import Manifest
from tuneform.job.report import (
    RESULTS_MARKER,
    loss_chart,
    render_run,
    render_run_markdown,
    write_loss_png,
    write_run_report,
)

NAME = "support-bot |<script>alert(1)</script>"


def manifest() -> dict[str, Any]:
    """A finished run whose eval_loss gate failed, named to break a table and inject HTML."""
    return {
        "run_key": "0123456789abcdef" * 4,
        "name": NAME,
        "path": "runs/support.yaml",
        "status": "failed_gates",
        "backend": "hf-jobs",
        "flavor": "a10g-small",
        "output_repo": "acme/support-bot",
        "git": {"commit": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "pr": 12},
        "spec": {"model": {"id": "acme/base", "revision": "93efa2f097d58c2a74874c7e644dbc9b0cee75a2"}},
        "data": {"train_rows": 1200, "eval_rows": 64, "bad_rows": 2, "train_tokens": 345678},
        "training": {
            "seconds": 192.4,
            "tokens_per_second": 1920.5,
            "steps": 6,
            "train_loss": 2.2,
            "peak_memory_gb": 3.21,
            "loss_history": [[1, 4.0], [2, 3.0], [3, 2.0], [4, 1.0], [5, 1.0], [6, 2.2]],
            "settings": {"learning_rate": 0.0002, "packing": True, "chat_template": "{{ x | y }}"},
        },
        "cost": {"estimated_usd": 0.5, "actual_usd": 0.42},
        "evals": {
            "table": {
                "rows": [
                    {
                        "metric": "exact_match",
                        "better": "higher",
                        "base": 0.12,
                        "previous": 0.8,
                        "new": 0.91,
                        "delta_base": 0.79,
                        "delta_previous": 0.11,
                    },
                    {
                        "metric": "eval_loss",
                        "better": "lower",
                        "base": 3.21,
                        "previous": 1.02,
                        "new": 1.2,
                        "delta_base": -2.01,
                        "delta_previous": 0.18,
                    },
                    {
                        "metric": "perplexity",
                        "better": "lower",
                        "base": 24.78,
                        "previous": 2.77,
                        "new": 3.32,
                        "delta_base": -21.46,
                        "delta_previous": 0.55,
                    },
                ],
                "misses": [
                    {
                        "suite": "support-intents",
                        "id": "support-007",
                        "expected": "refund",
                        "prediction": "[click](http://x) | @octocat\n<img src=x>",
                        "base_prediction": None,
                        "scores": {"exact_match": 0.0},
                    },
                ],
            },
            "previous": "fedcba9876543210" * 4,
            "gates": [
                {"metric": "exact_match", "op": ">=", "threshold": 0.85, "condition": ">= 0.85", "value": 0.91, "passed": True},
                {"metric": "eval_loss", "op": "<=", "threshold": 1.0, "condition": "<= 1.0", "value": 1.2, "passed": False},
            ],
        },
        "versions": {"transformers": "5.17.0", "trl": "1.14.0"},
    }


# loss_chart of the manifest's history at the default height (6 rows of eighth-blocks):
# heights 1 + round((loss - 1) / 3 * 47) = 48, 32, 17, 1, 1, 20 eighths.
CHART = [
    "4 ┤█",
    "  │█",
    "  │██",
    "  │██▁  ▄",
    "  │███  █",
    "1 ┤███▁▁█",
    "  └──────",
    "   step 1 step 6",
]


def test_markdown_report_of_a_run_that_failed_a_gate() -> None:
    text = render_run(Manifest.read(manifest()), "markdown")
    lines = text.splitlines()
    assert lines[0] == RESULTS_MARKER
    assert lines[1] == "### ❌ support-bot \\|&lt;script&gt;alert(1)&lt;/script&gt; failed its gates (version kept, marked blocked)"
    assert "runs/support.yaml · key 0123456789ab · hf-jobs/a10g-small · commit a1b2c3d4e5f6 · PR #\u206012" in lines
    assert "| data | 1,200 train rows · 64 eval rows · 345,678 train tokens · 2 bad rows dropped |" in lines
    assert "| training | 6 steps in 3m · 1,920 tokens/s · final train loss 2.200 · mean train loss 2.200 · peak memory 3.2 GB |" in lines
    assert "| cost | \\$0.42 actual · \\$0.50 estimated |" in lines
    assert "| models | new run-0123456789ab in acme/support-bot · previous run-fedcba987654 · base acme/base at 93efa2f097d5 |" in lines
    table = lines.index("| metric | base | previous | new | Δ vs base | Δ vs previous |")
    assert lines[table + 1 : table + 5] == [
        "|---|---:|---:|---:|---:|---:|",
        "| exact\\_match | 0.120 | 0.800 | **0.910** | ↑ +0.790 | ↑ +0.110 |",
        "| eval\\_loss | 3.210 | 1.020 | **1.200** | ↓ -2.010 | ↑ +0.180 |",
        "| perplexity | 24.780 | 2.770 | **3.320** | ↓ -21.460 | ↑ +0.550 |",
    ]
    gates = lines.index("| | metric | condition | new |")
    assert lines[gates + 2 : gates + 4] == [
        "| ✅ pass | exact\\_match | &gt;= 0.85 | 0.910 |",
        "| ❌ fail | eval\\_loss | &lt;= 1.0 | 1.200 |",
    ]
    chart = lines.index("```text")
    assert lines[chart + 1 : chart + 10] == CHART + ["```"]
    assert "| support-intents | support-007 | refund | \\[click\\](http:\u2060//x) \\| @\u2060octocat &lt;img src=x&gt; |  |" in lines
    assert "| chat\\_template | {{ x \\| y }} |" in lines
    assert "| transformers | 5.17.0 |" in lines
    # Nothing untrusted survives as markup: no raw tag, and every table row has its header's cells.
    assert "<script" not in text and "<img" not in text
    tables: list[set[int]] = []
    for previous, line in zip([""] + lines, lines):
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append(set())
            tables[-1].add(line.replace("\\|", "").count("|"))
    assert len(tables) == 6 and all(len(counts) == 1 for counts in tables), tables


def test_markdown_without_previous_version_or_gates_drops_those_parts() -> None:
    data = manifest()
    data["status"] = "passed"
    del data["evals"]["gates"], data["evals"]["previous"]
    data["training"] = None  # an eval-only job (action evaluate) trains nothing
    data["cost"]["actual_usd"] = None  # not known yet on hf-jobs
    for row in data["evals"]["table"]["rows"]:
        row["previous"] = row["delta_previous"] = None
    lines = render_run(Manifest.read(data), "markdown").splitlines()
    assert lines[1] == "### ✅ support-bot \\|&lt;script&gt;alert(1)&lt;/script&gt; trained and evaluated"
    assert "| metric | base | new | Δ vs base |" in lines
    assert "| exact\\_match | 0.120 | **0.910** | ↑ +0.790 |" in lines
    assert "#### Gates" not in lines and "#### Training loss" not in lines
    assert "| cost | \\$0.50 estimated |" in lines
    assert not any(line.startswith("| training") for line in lines)


def test_final_train_loss_is_the_last_logged_loss_and_the_mean_is_named_as_such() -> None:
    data = manifest()
    data["training"]["loss_history"] = [[1, 4.0], [2, 3.0], [3, 0.5]]  # the recorded train_loss stays the mean, 2.2
    text = render_run(Manifest.read(data), "markdown")
    assert "final train loss 0.500 · mean train loss 2.200 ·" in text
    data["training"]["loss_history"] = []  # nothing logged: only the mean, under its own name
    text = render_run(Manifest.read(data), "markdown")
    assert "mean train loss 2.200" in text and "final train loss" not in text


def test_a_manifest_with_only_a_name_still_renders() -> None:
    assert render_run(Manifest.read({"name": "bare"}), "markdown") == f"{RESULTS_MARKER}\n### ℹ️ bare finished\n"
    assert render_run(Manifest.read({"name": "bare"}), "text") == "• bare finished\n"


def test_loss_chart_shape_for_a_known_series() -> None:
    history = manifest()["training"]["loss_history"]
    assert loss_chart(history).splitlines() == CHART
    # Two rows: heights 1 + round((loss - 1) / 3 * 15) = 16, 11, 6, 1, 1, 7 eighths.
    assert loss_chart(history, height=2).splitlines() == ["4 ┤█▃", "1 ┤██▆▁▁▇", "  └──────", "   step 1 step 6"]
    # More points than columns: each column is the mean of its share of steps.
    assert loss_chart([[1, 4.0], [2, 4.0], [3, 2.0], [4, 2.0], [5, 1.0], [6, 1.0]], width=3, height=2).splitlines() == [
        "4 ┤█",
        "1 ┤█▆▁",
        "  └───",
        "   step 1 step 6",
    ]
    # Non-finite losses (a diverged step) are skipped; a flat loss sits mid-height.
    assert loss_chart([[1, 2.0], [2, math.nan], [3, 2.0]], height=2).splitlines() == ["2 ┤", "2 ┤██", "  └──", "   step 1 step 3"]
    assert loss_chart([]) == ""


def test_default_chart_is_sixty_columns_of_six_rows() -> None:
    lines = loss_chart([[step, 1 / step] for step in range(1, 1001)]).splitlines()
    assert len(lines) == 8
    assert lines[-2].endswith("└" + "─" * 60)
    assert lines[-1].endswith("step 1000") and lines[-1].strip().startswith("step 1 ")
    assert len(lines[-1]) == len(lines[-2])


def test_terminal_view_colors_deltas_by_direction() -> None:
    data = manifest()
    data["name"] = "evil\x1b[2J[red]name[/red]"
    plain = render_run(Manifest.read(data), "text")
    assert "\x1b" not in plain and "evil\ufffd[2J[red]name[/red] failed its gates" in plain
    assert "exact_match   0.120     0.800  0.910   +0.790      +0.110" in plain
    assert "  ✘ fail  eval_loss <= 1.0  (new: 1.200)" in plain
    assert "\n".join(CHART) in plain
    colored = render_run(Manifest.read(data), "text", color=True)
    assert "\x1b[32m +0.790\x1b[0m" in colored  # higher exact_match: green
    assert "\x1b[32m -2.010\x1b[0m" in colored  # lower loss: green
    assert "\x1b[31m    +0.180\x1b[0m" in colored  # loss up vs previous: red


def test_json_round_trip() -> None:
    data = manifest()
    # the JSON view is the manifest: read back, it is the same manifest
    assert Manifest.read(json.loads(render_run(Manifest.read(data), "json"))) == Manifest.read(data)
    diverged = copy.deepcopy(data)
    diverged["training"]["loss_history"].append([7, math.inf])
    diverged["evals"]["table"]["rows"][1]["new"] = math.nan
    text = render_run(Manifest.read(diverged), "json")
    assert json.loads(text)["training"]["loss_history"][-1] == [7, "inf"]
    assert json.loads(text)["evals"]["table"]["rows"][1]["new"] == "nan"
    assert "eval\\_loss | 3.210 | 1.020 | **nan** |" in render_run(Manifest.read(json.loads(text)), "markdown")
    with pytest.raises(ValueError, match="unknown format 'html'"):
        render_run(Manifest.read(data), "html")  # type: ignore[arg-type]


def test_png_and_report_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    data = manifest()
    data["name"] = "a $\\broken{ math$ name"  # must not reach matplotlib's mathtext parser
    files = write_run_report(Manifest.read(data), tmp_path / "report")
    assert files.chart == tmp_path / "report" / "loss.png"
    assert files.chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert files.markdown.read_text(encoding="utf-8") == render_run(Manifest.read(data), "markdown")
    assert json.loads(files.json.read_text(encoding="utf-8")) == json.loads(json.dumps(Manifest.read(data).to_json()))
    assert write_loss_png(Manifest.read({"name": "x"}), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_markdown_links_the_exact_version_and_says_how_to_roll_back(monkeypatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    manifest = {
        "run_key": "a" * 64,
        "output_repo": "acme/demo",
        "backend": "hf-jobs",
        "status": "passed",
        "name": "demo",
        "evals": {"previous": "b" * 64},
    }
    text = render_run_markdown(Manifest.read(manifest))
    assert "[`acme/demo` at `run-aaaaaaaaaaaa`](https://huggingface.co/acme/demo/tree/run-aaaaaaaaaaaa)" in text
    assert "revert this PR" in text and "`run-bbbbbbbbbbbb`" in text
    failed = render_run_markdown(Manifest.read(manifest | {"status": "failed_gates"}))
    assert "revert this PR" not in failed  # main did not move: nothing to roll back
    hostile = render_run_markdown(Manifest.read(manifest | {"output_repo": "acme/demo)](https://evil.example"}))
    assert "#### Model" not in hostile and "](https://evil.example" not in hostile.replace("\\]", "")


def test_markdown_links_the_tracked_run_and_names_the_kept_tracker_files() -> None:
    wandb = {"report_to": "wandb", "url": "https://wandb.ai/acme/support/runs/x1y2"}
    text = render_run_markdown(Manifest.read(manifest() | {"tracking": wandb}))
    assert "Tracked in wandb: [the run](https://wandb.ai/acme/support/runs/x1y2)." in text
    files = ["logs/tensorboard/events.out.tfevents.1.host", "logs/tensorboard/events.out.tfevents.2.host"]
    tensorboard = render_run_markdown(Manifest.read(manifest() | {"tracking": {"report_to": "tensorboard", "files": files}}))
    assert "tensorboard: 2 files in the version, under `tuneform/logs/tensorboard/`." in tensorboard  # hf-jobs: beside the reports
    local = render_run_markdown(Manifest.read(manifest() | {"backend": "local", "tracking": {"report_to": "tensorboard", "files": files}}))
    assert "under `logs/tensorboard/`." in local
    # a page that is no http(s) address is named, never linked
    odd = render_run_markdown(Manifest.read(manifest() | {"tracking": wandb | {"url": "javascript:alert(1)"}}))
    assert "Tracked in wandb: the run." in odd and "javascript" not in odd
    assert "Tracked in" not in render_run_markdown(Manifest.read(manifest()))


def test_model_card_has_hub_metadata_and_lineage() -> None:
    from tuneform.job.report import model_card

    manifest = {
        "run_key": "c" * 64,
        "name": "bot",
        "path": "runs/bot.yaml",
        "output_repo": "acme/bot",
        "status": "passed",
        "backend": "hf-jobs",
        "git": {"commit": "d" * 40, "pr": 12},
        "spec": {"model": {"id": "HuggingFaceTB/SmolLM2-135M-Instruct"}, "output": {"save": "adapter"}},
    }
    card = model_card(Manifest.read(manifest))
    assert card.startswith('---\nbase_model: "HuggingFaceTB/SmolLM2-135M-Instruct"\nlibrary_name: peft\ntags:\n- tuneform\n---\n')
    assert RESULTS_MARKER not in card
    assert "at commit `dddddddddddd` (PR #12); run key `" + "c" * 64 + "`." in card


def test_model_card_says_how_to_run_each_export_and_its_size() -> None:
    from tuneform.job.report import fmt_bytes, model_card

    exports = [
        {"name": "adapter", "path": "", "bytes": 4_500_000},
        {"name": "merged", "path": "merged", "bytes": 2_470_000_000},
        {"name": "gguf:q4_k_m", "path": "gguf/model-Q4_K_M.gguf", "bytes": 770_000_000},
    ]
    manifest = Manifest.read(
        {
            "run_key": "c" * 64,
            "name": "bot",
            "output_repo": "acme/bot",
            "status": "passed",
            "spec": {"model": {"id": "a/base"}, "output": {"save": ["adapter", "merged", "gguf:q4_k_m"]}},
            "exports": exports,
        }
    )
    card = model_card(manifest)
    assert "| `adapter` | `/` | 4.5 MB |" in card and "| `merged` | `merged` | 2.5 GB |" in card
    assert "| `gguf:q4_k_m` | `gguf/model-Q4_K_M.gguf` | 770.0 MB |" in card
    tag = "run-cccccccccccc"
    assert f'AutoPeftModelForCausalLM.from_pretrained("acme/bot", revision="{tag}")' in card
    assert f'AutoModelForCausalLM.from_pretrained("acme/bot", revision="{tag}", subfolder="merged")' in card
    fetch = f"hf download acme/bot gguf/model-Q4_K_M.gguf --revision {tag} --local-dir ."
    assert f"{fetch}\nllama-cli -m gguf/model-Q4_K_M.gguf" in card
    assert f'{fetch}\necho "FROM ./gguf/model-Q4_K_M.gguf" > Modelfile\nollama create bot-q4_k_m -f Modelfile' in card
    assert card.index("#### How to run") < card.index("#### Lineage")
    assert (fmt_bytes(812), fmt_bytes(1_000)) == ("812 B", "1.0 kB")
    no_exports = model_card(Manifest.read({**manifest.to_json(), "exports": []}))  # a version from before exports
    assert "How to run" not in no_exports
