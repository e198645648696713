"""The one escaper for untrusted text: GitHub markdown, workflow commands, and rich terminal text.

Every string a pull request controls (run name, run key, path, data row, metric name, setting,
error text, a model's prediction) passes through one function here before tuneform writes it
into a PR comment, a step summary, a model card, a workflow annotation or a rich terminal view.
One module so that every writer makes the same promise and a fix lands everywhere at once.

Markdown (GitHub-flavoured; CommonMark plus tables, strikethrough, math and GitHub's own
filters). Text is first made one line (`one_line`): control and bidi-override characters become
U+FFFD and whitespace runs (newline and carriage return included) one space, so it can neither
end a table row nor start a block (heading, list, quote, fence, HTML block). Then:

- CommonMark punctuation that opens inline markup or ends a cell is backslash-escaped:
  `` \\ ` * _ [ ] | ~ $ `` (so no emphasis, code span, link, image, footnote, strikethrough,
  math or cell break); a leading `-`, `+`, `=` (before a space, the same sign or the end) or a
  list number's `.`/`)` is escaped too, so a string a writer puts at the start of a line is no
  list item, thematic break or setext underline.
- `<`, `>` and `&` become `&lt;`, `&gt;`, `&amp;`: no raw HTML, no `<https://..>` autolink, no
  blockquote, and no entity reference of the user's (`&#64;`) can smuggle a character back.
- GitHub links and notifies from plain text after rendering (entities do not stop that), so a
  WORD JOINER (U+2060, invisible) goes after every `@` (no mention and no email autolink), every
  `#` (no `#123`/`owner/repo#123` cross-reference: a reference posts an event on the other issue
  or PR, so a PR could spam any issue; a `#` at the start is no heading either), after `GH` in
  `GH-123`, between `:` and `//` (no bare `https://` autolink) and between `www` and `.` (no
  bare `www.` autolink). The text still reads the same; copied, it carries invisible joiners.
  Hex strings may still link to commits: that notifies no one.

`md_text` is for inline positions and table cells; `md_link` labels an http(s) link with it; `md_code` for a code span (markup is inert
inside one, GitHub does not mention or link there; a table cell's span cannot hold `|`, so such
text falls back to `md_text`); `md_block` fences multi-line text; `html_text` is for text inside
raw HTML (a `<summary>`), where markdown is not parsed and backslashes would show.

Workflow commands (`::error file=..,line=..::message`): `command_data` and `command_property`
percent-encode what ends a command (`%`, CR, LF; and `:`, `,` in properties), as GitHub's
toolkit does, and replace other control characters (an ANSI escape would colour the log).

Terminal: `rich_text` is text for rich markup: one line, control characters replaced, and `[`
escaped (`rich_escape`, which also keeps newlines, for multi-line text), so `runs/a[/x].yaml`
prints literally instead of raising MarkupError or changing styles.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

WORD_JOINER = "\u2060"
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MD_BACKSLASHED = frozenset("\\`*_[]|~$")
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
# Where GitHub would link or notify: a joiner goes right after each match.
_GITHUB_TRIGGERS = re.compile(r"[@#]|:(?=//)|(?i:www)(?=\.)|(?i:\bgh)(?=-\d)")
_LINE_START = re.compile(r"^([-+=])(?=[-+= ]|$)|^(\d{1,9})([.)])(?= |$)")
_BACKTICKS = re.compile(r"`+")


def one_line(text: Any, limit: int | None = None) -> str:
    """`text` as one line of display text, cut to `limit` characters (the last one `…`).

    Control and bidi-override characters become U+FFFD (an escape sequence or a reversed run in a
    run name must neither drive a terminal nor disguise text); whitespace runs, newlines and
    carriage returns included, become one space; the ends are stripped.
    """
    out = []
    for char in str(text):
        if char.isspace():
            out.append(" ")
        elif unicodedata.category(char) == "Cc" or char in _BIDI:
            out.append("\ufffd")
        else:
            out.append(char)
    value = " ".join("".join(out).split())
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def _defuse_github(text: str) -> str:
    """A word joiner after each mention, reference and bare-URL trigger (see the module doc)."""
    return _GITHUB_TRIGGERS.sub(lambda m: m.group() + WORD_JOINER, text)


def md_text(text: Any, limit: int | None = None) -> str:
    """Untrusted text for an inline markdown position or a table cell.

    Guarantees: the result renders (CommonMark + GFM) as exactly the visible characters of
    `one_line(text, limit)` (plus invisible word joiners) in one paragraph or cell: no link,
    image, autolink, HTML, heading, list, quote, emphasis, code span, math or extra cell; on
    GitHub no @mention, issue reference or bare-URL autolink.
    """
    out = []
    for char in _defuse_github(one_line(text, limit)):
        if char in _MD_BACKSLASHED:
            out.append("\\" + char)
        else:
            out.append(_MD_ENTITIES.get(char, char))
    return _LINE_START.sub(_escape_line_start, "".join(out), count=1)


# A link target tuneform writes: http(s), and none of what could end the destination or the line.
_LINK_TARGET = re.compile(r"^https?://[^\s<>\"'`\\\x00-\x1f\x7f]+$")
_LINK_ENCODED = {"(": "%28", ")": "%29", "|": "%7C", "[": "%5B", "]": "%5D"}


def md_link(text: Any, url: Any) -> str:
    """A link labelled with untrusted `text` to `url`, itself from outside (a tracker's answer).

    Guarantees: the label renders as `md_text(text)` does; the target is an http(s) URL that ends
    where the link ends (parentheses, brackets and `|` are percent-encoded, so it can neither close
    the link early nor split a table cell). Anything else (another scheme, whitespace, quotes,
    angle brackets, backslashes, control characters) is no link: the label alone is returned.
    """
    label = md_text(text)
    target = str(url)
    if not _LINK_TARGET.match(target):
        return label
    return f"[{label}]({''.join(_LINK_ENCODED.get(char, char) for char in target)})"


def _escape_line_start(match: re.Match[str]) -> str:
    """`-`, `+`, `=` -> `\\-` ...; `1.` -> `1\\.`: no list item, break or setext line at a line start."""
    bullet, number, delimiter = match.groups()
    return "\\" + bullet if bullet else f"{number}\\{delimiter}"


def md_code(text: Any, *, cell: bool = False, limit: int | None = None) -> str:
    """Untrusted text as an inline code span (shown verbatim, one line, cut to `limit`).

    Guarantees: the span cannot be closed early (its fence is longer than any backtick run in
    the text, padded where the text starts or ends with a backtick) and nothing inside it is
    markup; GitHub neither mentions nor links inside code. In a table cell (`cell=True`) a `|`
    would still split the cell and a backslash before it cannot be escaped inside a span, so
    such text is written with `md_text` instead. Empty text gives "".
    """
    value = one_line(text, limit)
    if not value:
        return ""
    if cell and "|" in value:
        return md_text(value)
    fence = "`" * (_longest_backticks(value) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def md_block(text: str, info: str = "") -> str:
    """Multi-line untrusted text as a fenced code block with the `info` string (e.g. "diff").

    Guarantees: no line of `text` can close the block (the backtick fence is longer than any
    backtick run in it), so nothing in it renders as markup, and GitHub neither mentions nor
    links inside it. `info` is the caller's own word, never user text.
    """
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def html_text(text: Any, limit: int | None = None) -> str:
    """Untrusted text inside raw HTML that GitHub renders (e.g. `<summary>...</summary>`).

    Markdown is not parsed there, so backslashes would show: instead `&`, `<`, `>` and quotes
    become entities (no tag, attribute or entity of the user's), the text is one line (an HTML
    block ends at a blank line) and GitHub's triggers get word joiners as in `md_text`.
    """
    return html.escape(_defuse_github(one_line(text, limit)), quote=True)


def command_data(text: Any) -> str:
    """Untrusted text as the message of a GitHub workflow command (`::error ...::MESSAGE`).

    Guarantees: the command ends at the end of the line, so the text cannot start another
    command (`%`, CR and LF are percent-encoded as GitHub's toolkit does; GitHub decodes them
    and shows the line breaks); other control characters become U+FFFD.
    """
    out = []
    for char in str(text):
        if char == "%":
            out.append("%25")
        elif char == "\r":
            out.append("%0D")
        elif char == "\n":
            out.append("%0A")
        elif unicodedata.category(char) == "Cc" or char in _BIDI:
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def command_property(text: Any) -> str:
    """Untrusted text as a workflow command property value (`file=`, `title=`).

    Guarantees all `command_data` does, and that `:` and `,` (which end the property list or
    the property) are percent-encoded, so the value cannot add or change a property.
    """
    return command_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: Any, properties: Mapping[str, Any] | None = None) -> str:
    """`::command k=v,k=v::message` with every property value and the message escaped.

    `command` and the property names are the caller's own words; properties with an empty value
    (None, "", 0: no line number) are left out.
    """
    props = ",".join(f"{name}={command_property(value)}" for name, value in (properties or {}).items() if value)
    return f"::{command}{' ' + props if props else ''}::{command_data(message)}"


def rich_escape(text: str) -> str:
    """`text` (newlines kept) for a string that rich parses as markup, shown literally wherever
    the result is put in that markup: no style tag, no closing tag that raises MarkupError
    (`runs/a[/x].yaml`).

    Tag-like `[` are escaped by rich's own `rich.markup.escape`; that is not enough alone, since
    rich also drops the backslash of any `\\[` in plain text and halves backslashes before a tag
    (so an ending backslash would join the next tag): a word joiner goes between a backslash and
    a `[`, and after an ending backslash.
    """
    from rich.markup import escape  # rich is imported only by commands that print with it

    value = text.replace("\\[", "\\" + WORD_JOINER + "[")
    return escape(value + WORD_JOINER if value.endswith("\\") else value)


def rich_text(text: Any, limit: int | None = None) -> str:
    """Untrusted text for one line of rich markup (console.print, a table cell, a rule's title).

    Guarantees: rich shows `one_line(text, limit)` literally (see `rich_escape`), and no control
    character reaches the terminal.
    """
    return rich_escape(one_line(text, limit))
