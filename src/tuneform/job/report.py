"""The report of a finished run: terminal (rich), markdown for the PR comment, JSON, and a loss PNG.

`tuneform apply` prints it, the comment workflow posts it, `tuneform status` can show it again
later: every view is rendered from the job's manifest (tuneform.core.manifest.Manifest), so a
manifest read back from any registry (a Hub tag's `tuneform/manifest.json`, a local folder)
renders the same way with no model, torch or matplotlib import (only the PNG needs matplotlib).
A section an older manifest lacks (lineage, a field of git) is left out, so they still render.

Markdown puts untrusted text (names, paths, predictions, settings) through tuneform.core.markup
(`md_text`, `md_code`), so it can neither break a table nor inject HTML, links, images,
headings or @-mentions; the terminal view passes it to rich as `Text` (never parsed as markup)
after `one_line` dropped control characters (an escape sequence in a run name must not drive
the terminal).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tuneform.core.manifest import EvalRow, Manifest
from tuneform.core.markup import md_block, md_code, md_link, md_text, one_line
from tuneform.plan.render import fmt_seconds, fmt_usd

RESULTS_MARKER = "<!-- tuneform:results -->"
CHART_WIDTH = 60
CHART_HEIGHT = 6
MISSES_SHOWN = 10
CELL_CHARS = 80

_BLOCKS = " ▁▂▃▄▅▆▇█"
_SHA = re.compile(r"[0-9a-f]{7,64}")

Format = Literal["text", "markdown", "json"]


def _number(value: Any) -> float | None:
    """A manifest number as a float; JSON-safe strings ("nan", "inf") read back as floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def fmt_metric(value: Any) -> str:
    """A metric value: 3 decimals (scores and losses), 1 decimal from 100 up (perplexity)."""
    number = _number(value)
    if number is None:
        return "-"
    if not math.isfinite(number):
        return str(number)
    return f"{number:,.1f}" if abs(number) >= 100 else f"{number:.3f}"


def fmt_delta(value: Any) -> str:
    """A signed difference at metric precision; "0.000" when it rounds to nothing."""
    number = _number(value)
    if number is None:
        return "-"
    if not math.isfinite(number):
        return str(number)
    text = f"{number:+,.1f}" if abs(number) >= 100 else f"{number:+.3f}"
    return text[1:] if float(text.replace(",", "")) == 0 else text


def delta_direction(value: Any, better: str) -> Literal["better", "worse", "same"]:
    """Whether a displayed delta is an improvement, given which way the metric is better."""
    shown = fmt_delta(value)
    number = _number(shown.replace(",", ""))
    if number is None or number == 0 or math.isnan(number):
        return "same"
    return "better" if (number > 0) == (better != "lower") else "worse"


def _int(value: Any) -> str:
    number = _number(value)
    return "-" if number is None or not math.isfinite(number) else f"{round(number):,}"


# ---------------------------------------------------------------------------------------------
# Loss curve


def _finite_history(history: Any) -> list[tuple[float, float]]:
    points = []
    for point in history or []:
        if isinstance(point, Sequence) and len(point) == 2:
            step, loss = _number(point[0]), _number(point[1])
            if step is not None and loss is not None and math.isfinite(loss):
                points.append((step, loss))
    return points


def loss_chart(history: Sequence[Sequence[float]], *, width: int = CHART_WIDTH, height: int = CHART_HEIGHT) -> str:
    """A block chart of the loss that renders as text anywhere (a PR comment's ``` block included).

    At most `width` columns: with more points than columns, each column is the mean loss of an
    equal share of consecutive steps (so noise does not hide the trend). Each column is a bar of
    eighth-blocks scaled between the plotted minimum (one eighth) and maximum (full height); the
    y labels are that minimum and maximum, the x labels the first and last step. Non-finite losses
    are skipped. Empty string without points.
    """
    points = _finite_history(history)
    if not points:
        return ""
    columns = min(width, len(points))
    values = []
    for i in range(columns):
        share = points[i * len(points) // columns : (i + 1) * len(points) // columns]
        values.append(math.fsum(loss for _, loss in share) / len(share))
    low, high = min(values), max(values)
    levels = height * 8
    heights = [levels // 2 if high == low else 1 + round((v - low) / (high - low) * (levels - 1)) for v in values]
    top, bottom = f"{high:.4g}", f"{low:.4g}"
    pad = max(len(top), len(bottom))
    lines = []
    for row in range(height - 1, -1, -1):
        label = top if row == height - 1 else bottom if row == 0 else ""
        axis = "┤" if label else "│"
        bars = "".join(_BLOCKS[max(0, min(8, h - 8 * row))] for h in heights)
        lines.append(f"{label:>{pad}} {axis}{bars}".rstrip())
    lines.append(f"{'':>{pad}} └{'─' * columns}")
    first, last = f"step {points[0][0]:g}", f"step {points[-1][0]:g}"
    x_labels = first if len(points) == 1 else first + " " * max(1, columns - len(first) - len(last)) + last
    lines.append(f"{'':>{pad}}  {x_labels}")
    return "\n".join(lines)


def write_loss_png(manifest: Manifest, path: Path) -> Path | None:
    """Plot the training loss (and the new version's held-out loss, dashed) to a PNG at `path`.

    Uses matplotlib's object API on the Agg canvas, never pyplot, so nothing global (backend,
    current figure) changes in the calling process. Returns None when there is no loss history.
    """
    points = _finite_history(_loss_history(manifest))
    if not points:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.2), dpi=110, layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(
        [s for s, _ in points],
        [loss for _, loss in points],
        color="#1f77b4",
        linewidth=1.4,
        label="train loss",
        marker="o" if len(points) <= 30 else None,
        markersize=3,
    )
    eval_loss = next((_number(row.new) for row in manifest.evals.table.rows if row.metric == "eval_loss"), None)
    if eval_loss is not None and math.isfinite(eval_loss):
        axes.axhline(eval_loss, color="#d62728", linestyle="--", linewidth=1, label=f"held-out loss {eval_loss:.3f}")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    key12 = manifest.run_key[:12]
    # parse_math off: a '$' in an untrusted run name must not reach the mathtext parser.
    axes.set_title(one_line(manifest.name) + (f"  run-{key12}" if key12 else ""), fontsize=10, parse_math=False)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


# ---------------------------------------------------------------------------------------------
# Shared facts


def _loss_history(manifest: Manifest) -> list[tuple[int, float]]:
    return manifest.training.loss_history if manifest.training else []


def _has_previous(rows: list[EvalRow]) -> bool:
    return any(row.previous is not None for row in rows)


@dataclass(frozen=True)
class _Facts:
    """The summary lines every view shows, as (label, text) with text already display-clean."""

    title: str
    passed: bool | None
    where: str
    lines: list[tuple[str, str]]


def _status(manifest: Manifest) -> tuple[str, bool | None]:
    status = manifest.status
    if status == "passed":
        return "passed its gates" if manifest.evals.gates else "trained and evaluated", True
    if status == "failed_gates":
        return "failed its gates (version kept, marked blocked)", False
    return f"status {one_line(status)}" if status else "finished", None


def _commit(value: Any) -> str:
    text = str(value or "")
    return text[:12] if _SHA.fullmatch(text) else one_line(text)


def _facts(manifest: Manifest) -> _Facts:
    status, passed = _status(manifest)
    name = one_line(manifest.name or "run")
    where = [one_line(manifest.path)] if manifest.path else []
    if manifest.run_key:
        where.append(f"key {one_line(manifest.run_key)[:12]}")
    compute = "/".join(one_line(value) for value in (manifest.backend, manifest.flavor) if value)
    if compute:
        where.append(compute)
    git = manifest.git
    if git.commit:
        where.append(
            f"commit {_commit(git.commit)}" + ("" if git.clean is None else " (clean)" if git.clean else f" ({_dirty(git.run_file)})")
        )
    if git.pr is not None:
        where.append(f"PR #{git.pr}")

    lines = []
    data = manifest.data
    if data is not None:
        rows = f"{_int(data.train_rows)} train rows · {_int(data.eval_rows)} eval rows · {_int(data.train_tokens)} train tokens"
        lines.append(("data", rows + (f" · {_int(data.bad_rows)} bad rows dropped" if data.bad_rows else "")))
    training = manifest.training
    if training is not None:
        parts = [f"{_int(training.steps)} steps in {fmt_seconds(training.seconds)}", f"{_int(training.tokens_per_second)} tokens/s"]
        # The last logged loss is where training ended; the trainer's train_loss is the mean over
        # the whole run (dominated by the early, high losses), so it is named as the mean.
        if training.loss_history:
            parts.append(f"final train loss {fmt_metric(training.loss_history[-1][1])}")
        if training.train_loss is not None:
            parts.append(f"mean train loss {fmt_metric(training.train_loss)}")
        if training.peak_memory_gb is not None:
            parts.append(f"peak memory {training.peak_memory_gb:.1f} GB")
        lines.append(("training", " · ".join(parts)))
    cost = manifest.cost
    if cost is not None:
        lines.append(
            (
                "cost",
                (f"{fmt_usd(cost.actual_usd)} actual · " if cost.actual_usd is not None else "")
                + f"{fmt_usd(cost.estimated_usd)} estimated",
            )
        )
    models = []
    if manifest.run_key:
        models.append(
            f"new run-{one_line(manifest.run_key)[:12]}" + (f" in {one_line(manifest.output_repo)}" if manifest.output_repo else "")
        )
    if manifest.evals.previous:
        models.append(f"previous run-{one_line(manifest.evals.previous)[:12]}")
    if manifest.model_id:
        revision = manifest.model_revision
        sha = manifest.lineage.model_sha256 if manifest.lineage else None
        models.append(
            f"base {one_line(manifest.model_id)}"
            + (f" at {_commit(revision)}" if revision and not sha else "")
            + (f" sha256 {sha[:12]}" if sha else "")
        )
    if models:
        lines.append(("models", " · ".join(models)))
    if manifest.lineage and manifest.lineage.data:
        lines.append(("data sha256", " · ".join(f"{one_line(f.path)} {f.sha256[:12]}" for f in manifest.lineage.data)))
    return _Facts(f"{name} {status}", passed, " · ".join(where), lines)


def _dirty(run_file: str | None) -> str:
    """Why a version is not exactly its commit's run file."""
    if run_file == "untracked":
        return "run file not committed"
    if run_file == "modified":
        return "run file changed since the commit"
    return "uncommitted changes"


def _pairs(value: Any) -> list[tuple[str, str]]:
    """(key, value) display pairs of a mapping such as training settings or library versions."""
    if not isinstance(value, Mapping):
        return []
    return [
        (one_line(key), one_line(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))) for key, item in value.items()
    ]


def _expected_text(expected: Any) -> str:
    return expected if isinstance(expected, str) else json.dumps(expected, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Views


def _md_delta(value: Any) -> str:
    """A delta with an arrow for its direction (markdown has no colour)."""
    shown = fmt_delta(value)
    number = _number(shown.replace(",", ""))
    if number is None or number == 0 or not math.isfinite(number):
        return shown
    return f"{'↑' if number > 0 else '↓'} {shown}"


def render_run_markdown(manifest: Manifest) -> str:
    """The PR comment: hidden marker, verdict, run facts, eval table, gates, loss chart, details."""
    facts = _facts(manifest)
    icon = {True: "✅", False: "❌", None: "ℹ️"}[facts.passed]
    out = [RESULTS_MARKER, f"### {icon} {md_text(facts.title)}", ""]
    if facts.where:
        out += [md_text(facts.where), ""]
    if facts.lines:
        out += ["| | |", "|---|---|"] + [f"| {label} | {md_text(text)} |" for label, text in facts.lines] + [""]

    rows = manifest.evals.table.rows
    if rows:
        previous = _has_previous(rows)
        out += ["#### Evals", ""]
        if previous:
            out += ["| metric | base | previous | new | Δ vs base | Δ vs previous |", "|---|---:|---:|---:|---:|---:|"]
        else:
            out += ["| metric | base | new | Δ vs base |", "|---|---:|---:|---:|"]
        for row in rows:
            cells = [md_text(row.metric), fmt_metric(row.base)]
            if previous:
                cells.append(fmt_metric(row.previous))
            cells += [f"**{fmt_metric(row.new)}**", _md_delta(row.delta_base)]
            if previous:
                cells.append(_md_delta(row.delta_previous))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")

    gates = manifest.evals.gates
    if gates:
        out += ["#### Gates", "", "| | metric | condition | new |", "|---|---|---|---:|"]
        for gate in gates:
            verdict = "✅ pass" if gate.passed else "❌ fail"
            out.append(f"| {verdict} | {md_text(gate.metric)} | {md_text(gate.condition)} | {fmt_metric(gate.value)} |")
        out.append("")

    chart = loss_chart(_loss_history(manifest))
    if chart:
        out += ["#### Training loss", "", "```text", chart, "```", ""]
    out += _tracked(manifest)

    misses = manifest.evals.table.misses[:MISSES_SHOWN]
    if misses:
        out += [
            f"<details><summary>Eval rows the new version missed (first {len(misses)})</summary>",
            "",
            "| suite | id | expected | new | base |",
            "|---|---|---|---|---|",
        ]
        for miss in misses:
            cells = [miss.suite, miss.id, _expected_text(miss.expected), miss.prediction or "", miss.base_prediction or ""]
            out.append("| " + " | ".join(md_text(cell, CELL_CHARS) for cell in cells) + " |")
        out += ["", "</details>", ""]

    out += _model_and_rollback(manifest)

    for title, header, pairs in (
        ("Training settings", "| setting | value |", _pairs(manifest.training.settings if manifest.training else {})),
        ("Library versions", "| library | version |", _pairs(manifest.versions)),
    ):
        if pairs:
            out += [f"<details><summary>{title}</summary>", "", header, "|---|---|"]
            out += [f"| {md_text(key)} | {md_text(value, CELL_CHARS)} |" for key, value in pairs]
            out += ["", "</details>", ""]
    return "\n".join(out)


def _tracked(manifest: Manifest) -> list[str]:
    """Where else the curves are: the tracked run's page (wandb, mlflow, trackio) and the tracker
    files the version keeps (tensorboard's event files: train/tracking.py)."""
    tracking = manifest.tracking
    if tracking is None or not (tracking.url or tracking.files):
        return []
    out = []
    if tracking.url:
        out.append(f"Tracked in {md_text(tracking.report_to)}: {md_link('the run', tracking.url)}.")
    if tracking.files:
        folder = ("tuneform/" if manifest.backend == "hf-jobs" else "") + tracking.files[0].rsplit("/", 1)[0] + "/"
        count = len(tracking.files)
        out.append(f"{md_text(tracking.report_to)}: {count} file{'s' if count > 1 else ''} in the version, under {md_code(folder)}.")
    return [" ".join(out), ""]


HUB_URL = "https://huggingface.co"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_KEY = re.compile(r"^[0-9a-f]{64}$")


def _model_and_rollback(manifest: Manifest) -> list[str]:
    """Where the version lives, at its exact revision, and how to undo the change."""
    key, repo = manifest.run_key, manifest.output_repo
    if not (_KEY.match(key) and _REPO_ID.match(repo)):
        return []
    tag = f"run-{key[:12]}"
    if manifest.backend == "hf-jobs":
        base = (os.environ.get("HF_ENDPOINT") or HUB_URL).rstrip("/")
        where = f"[`{repo}` at `{tag}`]({base}/{repo}/tree/{tag})"
    else:
        where = f"`{repo}` version `{tag}` in the local registry ({md_code(f'tuneform history {manifest.name}')})"
    out = ["#### Model", "", f"{where}."]
    previous = manifest.evals.previous
    if manifest.passed:
        back = f"`run-{previous[:12]}`" if isinstance(previous, str) and _KEY.match(previous) else "the version before it"
        out.append(f"To roll back, revert this PR: the plan will say `restore` and point `main` back at {back}, with no training and $0.")
    return out + [""]


def model_card(manifest: Manifest) -> str:
    """README.md of a published version: Hub metadata, then the same report a PR gets, then its
    lineage (what trained it, from which commit, on which bytes, what it replaced)."""
    front = ["---"]
    if base := manifest.hub_model_id:
        front.append(f"base_model: {json.dumps(base)}")
    front += [f"library_name: {'peft' if 'adapter' in manifest.saves else 'transformers'}", "tags:", "- tuneform", "---", ""]
    body = render_run_markdown(manifest).replace(RESULTS_MARKER, "").lstrip("\n")
    usage = "".join(f"\n{section}\n" for section in _export_sections(manifest))
    return "\n".join(front) + body + usage + "\n#### Lineage\n\n" + "\n".join(_lineage_lines(manifest)) + "\n"


def fmt_bytes(size: int) -> str:
    """Bytes for people: 812 B, 4.1 MB, 2.3 GB (powers of 1000, as the Hub shows file sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _export_sections(manifest: Manifest) -> list[str]:
    """The model card's "How to run": a table of the version's exports (where each sits, its
    size), then per export the commands that load it, pinned to the version's tag. The repo id
    goes into code through json.dumps (Python) or shlex.quote (shell), and the code into the
    card through md_block; table cells through md_code."""
    import shlex

    if not manifest.exports:
        return []
    repo, tag = manifest.output_repo, f"run-{manifest.run_key[:12]}"
    py_repo, sh_repo, sh_tag = json.dumps(repo), shlex.quote(repo), shlex.quote(tag)
    rows = ["| export | in the repo | size |", "|---|---|---|"]
    rows += [f"| {md_code(e.name, cell=True)} | {md_code(e.path or '/', cell=True)} | {fmt_bytes(e.bytes)} |" for e in manifest.exports]
    sections = ["#### How to run\n\n" + "\n".join(rows)]
    for export in manifest.exports:
        sub = f", subfolder={json.dumps(export.path)}" if export.path and not export.path.endswith(".gguf") else ""
        if export.name == "adapter":
            code = (
                "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained({py_repo}, revision={json.dumps(tag)})\n"
                f"tokenizer = AutoTokenizer.from_pretrained({py_repo}, revision={json.dumps(tag)})"
            )
            sections.append(f"The adapter, on its base model, with transformers + PEFT:\n\n{md_block(code, 'python')}")
        elif export.name == "merged":
            code = (
                "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f"model = AutoModelForCausalLM.from_pretrained({py_repo}, revision={json.dumps(tag)}{sub})\n"
                f"tokenizer = AutoTokenizer.from_pretrained({py_repo}, revision={json.dumps(tag)}{sub})"
            )
            if export.path:  # vLLM takes no subfolder: download it first
                folder = shlex.quote(export.path)
                serve = f"hf download {sh_repo} --revision {sh_tag} --include {shlex.quote(export.path + '/*')} --local-dir model\nvllm serve model/{folder}"
            else:
                serve = f"vllm serve {sh_repo} --revision {sh_tag}"
            sections.append(
                f"The merged 16-bit weights, with transformers:\n\n{md_block(code, 'python')}\n\nServed with vLLM:\n\n{md_block(serve, 'sh')}"
            )
        else:
            path = shlex.quote(export.path)
            name = shlex.quote(f"{manifest.name}-{export.name.removeprefix('gguf:')}")
            fetch = f"hf download {sh_repo} {path} --revision {sh_tag} --local-dir ."
            llama = f"{fetch}\nllama-cli -m {path}"
            ollama = f'{fetch}\necho "FROM ./{export.path}" > Modelfile\nollama create {name} -f Modelfile\nollama run {name}'
            sections.append(f"{md_code(export.name)} with llama.cpp:\n\n{md_block(llama, 'sh')}\n\nor Ollama:\n\n{md_block(ollama, 'sh')}")
    return sections


def _lineage_lines(manifest: Manifest) -> list[str]:
    """The model card's lineage: run file and commit (clean or not), PR, base model at its
    revision or content hash, the version it started from, the data files' hashes, the GPU.
    Untrusted text is escaped."""
    git = manifest.git
    source = f"Trained by tuneform from {md_code(manifest.path)}"
    if git.commit:
        source += f" at commit {md_code(git.commit[:12])}"
        if git.clean is not None:
            source += " (clean)" if git.clean else f" ({_dirty(git.run_file)}: the commit alone does not reproduce it)"
    if git.pr is not None:
        source += f" (PR #{git.pr})"
    bullets = []
    lineage = manifest.lineage
    if manifest.model_id:
        model = f"- base model {md_code(manifest.model_id)}"
        if lineage and lineage.model_sha256:
            model += f", content sha256 `{lineage.model_sha256[:12]}`"
        elif manifest.model_revision:
            model += f" at revision {md_code(manifest.model_revision[:40])}"
        bullets.append(model)
    if lineage and lineage.parent:
        parent = lineage.parent
        saved = f" ({md_text(parent.save)})" if parent.save else ""
        bullets.append(f"- started from tuneform version {md_code(parent.repo)} `run-{md_text(parent.run_key[:12])}`{saved}")
    if lineage:
        bullets += [f"- data {md_code(f.path)} sha256 `{f.sha256[:12]}`" for f in lineage.data]
        bullets += [f"- dataset {md_code(name)} at revision {md_code(rev[:40])}" for name, rev in lineage.datasets.items()]
        gpus = f" x{lineage.gpu_count}" if lineage.gpu_count > 1 else ""
        bullets.append(f"- trained on {md_text(lineage.gpu)}{gpus}" if lineage.gpu else "- trained on CPU")
    return [source + f"; run key {md_code(manifest.run_key)}."] + ([""] + bullets if bullets else [])


def render_run_text(manifest: Manifest, *, color: bool = False, width: int = 100) -> str:
    """The terminal view (rich); with `color`, deltas are green when better and red when worse."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=color, color_system="standard" if color else None, highlight=False, emoji=False
    )
    facts = _facts(manifest)
    mark, style = {True: ("✔", "bold green"), False: ("✘", "bold red"), None: ("•", "bold")}[facts.passed]
    console.print(Text(f"{mark} {facts.title}", style=style))
    if facts.where:
        console.print(Text(f"  {facts.where}", style="dim"))
    for label, text in facts.lines:
        console.print(Text.assemble("  ", (f"{label:<9}", "bold"), " ", text))

    rows = manifest.evals.table.rows
    if rows:
        previous = _has_previous(rows)
        table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
        table.add_column("metric")
        for column in ["base"] + (["previous"] if previous else []) + ["new", "Δ base"] + (["Δ previous"] if previous else []):
            table.add_column(column, justify="right")
        styles = {"better": "green", "worse": "red", "same": "dim"}
        for row in rows:
            cells: list[Text] = [Text(one_line(row.metric)), Text(fmt_metric(row.base))]
            if previous:
                cells.append(Text(fmt_metric(row.previous)))
            cells.append(Text(fmt_metric(row.new), style="bold"))
            deltas = [row.delta_base] + ([row.delta_previous] if previous else [])
            cells += [Text(fmt_delta(delta), style=styles[delta_direction(delta, row.better)]) for delta in deltas]
            table.add_row(*cells)
        console.print()
        console.print(table)

    gates = manifest.evals.gates
    if gates:
        console.print()
        console.print(Text("gates", style="bold"))
        for gate in gates:
            console.print(
                Text(
                    f"  {'✔ pass' if gate.passed else '✘ fail'}  {one_line(gate.metric)} {one_line(gate.condition)}  (new: {fmt_metric(gate.value)})",
                    style="green" if gate.passed else "red",
                )
            )

    chart = loss_chart(_loss_history(manifest))
    if chart:
        console.print()
        console.print(Text("training loss", style="bold"))
        console.print(Text(chart))
    return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    """The manifest with non-finite floats as strings ("nan", "inf"): JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def render_run_json(manifest: Manifest) -> str:
    """The manifest itself as strict JSON, for agents and scripts (the same facts, no layout)."""
    return json.dumps(_json_safe(manifest.to_json()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def render_run(manifest: Manifest, fmt: Format, *, color: bool = False) -> str:
    """Render a finished run as `text` (terminal), `markdown` (PR comment) or `json`."""
    if fmt == "json":
        return render_run_json(manifest)
    if fmt == "markdown":
        return render_run_markdown(manifest)
    if fmt == "text":
        return render_run_text(manifest, color=color)
    raise ValueError(f"unknown format '{fmt}': use text, markdown or json")


@dataclass(frozen=True)
class ReportFiles:
    """Where `write_run_report` put each view; `chart` is None without a loss history."""

    markdown: Path
    json: Path
    chart: Path | None


def write_run_report(manifest: Manifest, folder: Path) -> ReportFiles:
    """Write report.md, report.json and loss.png into `folder` (next to the version's files)."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / "report.md"
    markdown.write_text(render_run_markdown(manifest), encoding="utf-8")
    data = folder / "report.json"
    data.write_text(render_run_json(manifest), encoding="utf-8")
    return ReportFiles(markdown, data, write_loss_png(manifest, folder / "loss.png"))
