"""tuneform.core.markup, and every writer that puts user text into GitHub markdown, workflow
commands or rich terminal output, fed hostile strings and rendered for real.

Markdown is rendered by markdown-it-py (CommonMark + GFM tables): tests/markdown_check.py says
what it checks. Strings that only a run file or a data file can carry are built through the
real writers over a temp git repository.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import RUN, SETTINGS, Repo, jsonl
from markdown_check import HOSTILE, assert_inert, render
from test_runreport import manifest as report_manifest
from tuneform.core.manifest import Manifest
from tuneform.core.markup import (
    WORD_JOINER,
    command_data,
    command_property,
    html_text,
    md_block,
    md_code,
    md_text,
    one_line,
    rich_text,
    workflow_command,
)
from tuneform.github.results import FAILED, FINISHED, RunResult, render_results
from tuneform.github.reuse import Reuse, render_reuse_markdown
from tuneform.job.report import model_card, render_run_markdown

ALL = " ".join(HOSTILE)
# Characters that mean something to CommonMark, GFM, GitHub or rich, plus letters to link them.
MARKUPISH = st.lists(
    st.sampled_from([*"\\`*_[]()<>&!#|~$@:/.-+=;\"' \t\r\nahtpswx019", "www.", "://", "GH-", "\x1b", "\u202e", "&#64;", "[/x]"])
).map("".join)


def visible(text: str) -> str:
    return " ".join(text.replace(WORD_JOINER, "").split())


def no_github_triggers(text: str) -> None:
    """GitHub's own filters (not CommonMark): no mention, issue reference or bare-URL autolink."""
    assert not re.search(r"@\w|#\d|://|www\.", text, re.IGNORECASE), text


# ---------------------------------------------------------------------------------------------
# The escapers themselves: what renders is exactly the user's text, and nothing else


@settings(max_examples=300, deadline=None)
@given(MARKUPISH)
@example(ALL)
@example("- item")
@example("1. first")
@example("---")
@example("a\\")
@example("\\|")
def test_md_text_renders_as_the_text_itself_in_a_paragraph_and_a_cell(text: str) -> None:
    escaped = md_text(text)
    no_github_triggers(escaped)
    paragraph = render(escaped)
    assert [tag for tag, _ in paragraph.tags] == (["p"] if one_line(text) else [])
    assert paragraph.text == visible(one_line(text))
    cell = render(f"| h | h2 |\n|---|---|\n| {escaped} | end |\n")
    assert cell.tables == [[2, 2]] and [tag for tag, _ in cell.tags].count("td") == 2
    assert cell.text == visible(f"h h2 {one_line(text)} end")


@settings(max_examples=300, deadline=None)
@given(MARKUPISH)
@example("a`b``c")
@example("`start")
@example("a\\|b")
def test_md_code_is_one_code_span_even_in_a_table_cell(text: str) -> None:
    value = one_line(text)
    out = render(md_code(text))
    assert out.text == visible(value)
    assert [tag for tag, _ in out.tags] == (["p", "code"] if value else [])
    cell = render(f"| h | h2 |\n|---|---|\n| {md_code(text, cell=True)} | end |\n")
    assert cell.tables == [[2, 2]] and cell.text == visible(f"h h2 {value} end")


@settings(max_examples=200, deadline=None)
@given(MARKUPISH)
@example("</summary></details>\n\n# HEADMARK")
def test_html_text_stays_text_inside_a_summary(text: str) -> None:
    escaped = html_text(text)
    no_github_triggers(escaped)
    out = render(f"<details><summary>{escaped}</summary>\n\n- item\n\n</details>\n")
    assert [tag for tag, _ in out.tags] == ["details", "summary", "ul", "li"]
    assert out.text == visible(f"{one_line(text)} item")


def test_md_block_cannot_be_closed_by_its_text() -> None:
    text = "a\n```\n# HEADMARK\n````\n[x](https://evil)\n"
    out = render(md_block(text, "diff"))
    assert [tag for tag, _ in out.tags] == ["pre", "code"] and out.tags[1][1] == {"class": "language-diff"}
    assert out.html.count("HEADMARK") == 1 and "<h1" not in out.html


def test_md_text_keeps_punctuation_readable() -> None:
    """The known cases, for a reader: what each escape looks like in the markdown source."""
    assert md_text("a|b") == "a\\|b"
    assert md_text("<b>&amp;</b>") == "&lt;b&gt;&amp;amp;&lt;/b&gt;"
    assert md_text("![x](e.png) `c` *em* _u_ ~s~ $x$") == "!\\[x\\](e.png) \\`c\\` \\*em\\* \\_u\\_ \\~s\\~ \\$x\\$"
    assert md_text("hi @team\nnext\tline\x1b[2J\u202e") == "hi @\u2060team next line\ufffd\\[2J\ufffd"
    assert md_text("# x #1 https://e www.e GH-2") == "#\u2060 x #\u20601 https:\u2060//e www\u2060.e GH\u2060-2"
    assert md_text("- a") == "\\- a" and md_text("1. a") == "1\\. a" and md_text("5.17.0") == "5.17.0"
    assert md_text("x" * 100, 10) == "x" * 9 + "…"


# ---------------------------------------------------------------------------------------------
# Workflow commands and the terminal


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("50% a:b,c", "50%25 a:b,c", "50%25 a%3Ab%2Cc"),
        ("one\r\n::error::forged", "one%0D%0A::error::forged", "one%0D%0A%3A%3Aerror%3A%3Aforged"),
        ("esc\x1b[31mred", "esc\ufffd[31mred", "esc\ufffd[31mred"),
    ],
)
def test_workflow_command_escapes(text: str, data: str, prop: str) -> None:
    assert command_data(text) == data and command_property(text) == prop
    line = workflow_command("error", text, {"file": text, "line": 3, "col": None, "title": ""})
    assert line == f"::error file={prop},line=3::{data}" and "\n" not in line and "\r" not in line


@settings(max_examples=200, deadline=None)
@given(MARKUPISH)
def test_rich_text_prints_literally(text: str) -> None:
    from rich.console import Console

    console = Console(width=500, record=True, color_system=None, highlight=False, emoji=False)
    console.print(f"[bold]{rich_text(text)}[/bold] {rich_text(text)}", soft_wrap=True)
    assert console.export_text().rstrip("\n").replace(WORD_JOINER, "") == f"{one_line(text)} {one_line(text)}"


def test_preview_marks_trained_spans_around_text_that_is_rich_markup() -> None:
    from rich.console import Console

    from tuneform.train.format import PreviewSample

    text = "user: [bold]a\\[1] [/x] c\\\\\nassistant: d\\\\"  # rich alone drops the backslash of a \\[1 and halves two before a tag
    sample = PreviewSample("data/x.jsonl", 1, text, [(len(text) - 2, len(text))], 10, 2, False)
    console = Console(width=500, record=True, color_system=None, highlight=False)
    console.print(sample.marked("rich"), soft_wrap=True)
    assert console.export_text().replace(WORD_JOINER, "") == text + "\n"


def pr_with_run_at(repo: Repo, path: str) -> None:
    repo.git("checkout", "-q", "-b", "pr")
    repo.write(path, "name: ax\n" + RUN.replace("1.0e-4", "2.0e-4"))
    repo.commit("a run whose path is rich markup")


def test_plan_text_prints_a_run_path_that_is_rich_markup(repo: Repo) -> None:
    pr_with_run_at(repo, "runs/a[/x].yaml")
    result = repo.cli("plan")
    assert result.exit_code == 0, result.output
    assert "runs/a[/x].yaml" in result.output and "create" in result.output


def test_apply_prints_a_run_path_that_is_rich_markup(repo: Repo) -> None:
    pr_with_run_at(repo, "runs/a[/x].yaml")
    repo.write("runs/a[/x].yaml", "name: ax\n" + RUN + "lerning_rate: 1\n")  # invalid: apply prints the plan, trains nothing
    repo.commit("an invalid run")
    result = repo.cli("apply", "runs/a[/x].yaml")
    assert result.exit_code == 1 and "runs/a[/x].yaml" in result.output and "Plan is not applicable" in result.output, result.output


# ---------------------------------------------------------------------------------------------
# Every markdown writer, fed hostile strings


def _rows() -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "answer"}]} for i in range(20)]


def test_plan_markdown_with_hostile_paths_keys_and_data(repo: Repo) -> None:
    name = "@octocat ![i](p.png) <img src=x onerror=alert(1)> # HEADMARK a | b ``tick`` www.evil.example #999"
    repo.write("pyproject.toml", SETTINGS + f"allowed_images = [{json.dumps(name)}]\n")  # main allows it as an image too
    repo.commit("allow the hostile image")
    repo.git("checkout", "-q", "-b", "pr")
    data = f"data/{name}.jsonl"
    row = {"messages": [{"role": "user", "content": "DATAROW " + ALL}, {"role": "assistant", "content": "[x](https://evil)"}]}
    repo.write(data, jsonl([row, row, *_rows()]))
    # an hf-jobs run: its image shows in a table cell
    compute = f"compute: {{backend: hf-jobs, image: {json.dumps(name)}}}\n"
    repo.write(f"runs/{name}.yaml", "name: hostile\n" + RUN.replace("data/chat.jsonl", json.dumps(data)) + compute)
    repo.write("runs/bad.yaml", RUN + json.dumps(ALL) + ": 1\n")  # an error message quoting the key
    repo.commit("hostile")
    out = assert_inert(repo.cli("plan", "--format", "markdown").output, [f"runs/{name}.yaml", f"unknown key '{ALL}'"])
    assert "DATAROW @octocat please look" in out.text  # the duplicated row's sample, in the data check
    assert f"runs/{name}.yaml" in out.cells and "runs/bad.yaml" in out.cells
    code, plan = repo.json("plan", "--format", "json")
    assert out.tables == [[12] * (1 + len(plan["runs"]))] and len(plan["runs"]) == 2  # header + one row per run (12 columns)
    assert plan["runs"][0]["image"] == name and plan["runs"][0]["action"] == "create"


def test_validate_github_format_keeps_hostile_text_in_one_annotation(repo: Repo) -> None:
    path = "runs/a,b:c%0A::warning::x.yaml"
    repo.write(path, RUN + json.dumps(ALL) + ": 1\n")
    result = repo.cli("validate", "--format", "github", path)
    lines = result.output.splitlines()
    assert result.exit_code == 1 and len(lines) == 1
    assert lines[0].startswith("::error file=runs/a%2Cb%3Ac%250A%3A%3Awarning%3A%3Ax.yaml,line=")
    message = lines[0].split("::", 2)[2]
    decoded = re.sub(r"%(25|0D|0A)", lambda m: {"25": "%", "0D": "\r", "0A": "\n"}[m.group(1)], message)
    assert decoded.startswith(f"unknown key '{ALL}'")


def test_data_check_markdown_with_hostile_rows(repo: Repo) -> None:
    row = {"messages": [{"role": "user", "content": "DATAROW " + ALL}, {"role": "assistant", "content": "<https://evil>"}]}
    repo.write("data/chat.jsonl", jsonl([row, row, *_rows()]))
    repo.commit("hostile rows")
    result = repo.cli("data", "check", "runs/support.yaml", "--format", "markdown")
    out = assert_inert(result.output, ["duplicates"])
    assert "DATAROW @octocat please look" in out.text


def hostile_manifest() -> dict[str, Any]:
    """The run report's manifest with every free-text field set to a hostile string."""
    data = report_manifest()
    data["name"] = ALL
    data["path"] = f"runs/{ALL}.yaml"
    rows = data["evals"]["table"]["rows"]
    rows[0]["metric"] = "[x](https://evil) # HEADMARK"
    data["evals"]["gates"][0]["metric"] = "a | b @octocat"
    data["evals"]["gates"][0]["condition"] = "<img src=x onerror=alert(1)>"
    for miss in data["evals"]["table"]["misses"]:
        miss.update(suite="\r\n| x |", id="#999", expected="![i](https://evil/p.png)", prediction=ALL, base_prediction="www.evil.example")
    data["training"]["settings"] = {"<https://evil>": "``tick`` `", "chat_template": "{{ x | y }}", "packing": "\r\n| x |"}
    data["versions"] = {"@octocat": "https://evil.example", "trl": "# HEADMARK"}  # as many rows as report_manifest's
    # a tracker's page that tries to close its link and open another
    data["tracking"] = {"report_to": "wandb", "url": "https://wandb.ai/acme/run)[x](javascript:alert(1)|a"}
    return data


def test_run_report_markdown_with_hostile_manifest() -> None:
    data = hostile_manifest()
    rows = [len(table) for table in render(render_run_markdown(Manifest.read(report_manifest()))).tables]
    out = assert_inert(
        render_run_markdown(Manifest.read(data)),
        rows=rows,
        shown=["``tick`` `", "{{ x | y }}", "a | b @octocat", "<img src=x onerror=alert(1)>"],
        links=2,  # the version, the tracked run
    )
    assert [href for tag, attrs in out.tags if tag == "a" for href in [attrs["href"]] if "wandb" in href] == [
        "https://wandb.ai/acme/run%29%5Bx%5D%28javascript:alert%281%29%7Ca"
    ]
    assert visible(out.headings[0]) == f"❌ {visible(one_line(ALL))} failed its gates (version kept, marked blocked)"
    assert {"a | b @octocat", "| x |", "``tick`` `", "{{ x | y }}", "# HEADMARK"} <= set(out.cells)


def test_model_card_with_hostile_manifest() -> None:
    data = hostile_manifest()
    card = model_card(Manifest.read(data))
    body = card.split("---\n", 2)[2]
    rows = [len(table) for table in render(model_card(Manifest.read(report_manifest()))).tables]
    out = assert_inert(body, rows=rows, shown=[f"runs/{one_line(ALL)}.yaml", "[x](https://evil) # HEADMARK"], links=2, trusted=("#12",))
    assert "Lineage" in out.headings


def test_results_comment_with_hostile_run_and_error() -> None:
    results = [
        RunResult("0123456789ab", ALL, "job1", "https://huggingface.co/jobs/acme/job1", FAILED, "ERROR", message=ALL),
        RunResult(
            "fedcba987654",
            "@octocat",
            "job2",
            "https://huggingface.co/jobs/acme/job2",
            FINISHED,
            "COMPLETED",
            report=render_run_markdown(Manifest.read(hostile_manifest())),
        ),
    ]
    out = assert_inert(render_results(results, commit="a1b2c3d4e5f6" * 3), [ALL, "@octocat"], links=4)  # 2 jobs, 1 model, its tracked run
    assert out.html.count("<h2>") == 1


def test_reuse_section_with_hostile_path_and_note() -> None:
    key = "0123456789abcdef" * 4
    found = [
        Reuse("restore", f"runs/{ALL}.yaml", "acme/faq", key, 1.5, None, 12),
        Reuse("unreadable", f"runs/{ALL}.yaml", "acme/faq", key, note=ALL),
    ]
    assert_inert(render_reuse_markdown(found), [f"runs/{ALL}.yaml", ALL], trusted=("#12",))


def test_a_table_cell_pipe_left_unescaped_is_caught() -> None:
    """The checker itself: the rendering a dropped `|` escape would give fails it."""
    with pytest.raises(AssertionError, match="not shown"):
        assert_inert("| h | h2 |\n|---|---|\n| x a | b | y |\n", ["x a | b"])
    with pytest.raises(AssertionError, match="tables of other lengths"):
        assert_inert("| h | h2 |\n|---|---|\n| x\n| y |\n", rows=[2])
    with pytest.raises(AssertionError, match="markup from user text"):
        assert_inert("<img src=x onerror=alert(1)>")
    with pytest.raises(AssertionError, match="GitHub would mention"):
        assert_inert("hi @octocat")
