"""Render markdown tuneform wrote with a real CommonMark renderer and check nothing a user wrote
became markup.

markdown-it-py renders CommonMark plus GFM tables (raw HTML passes through, as on GitHub before
its sanitizer), so a link, image, heading, HTML tag or extra table cell made from user text shows
up in the HTML. GitHub's own extensions (mentions, issue references, bare-URL autolinks) are not
CommonMark: they are checked on the rendered text outside code, where GitHub applies them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

from markdown_it import MarkdownIt

from tuneform.core.markup import WORD_JOINER, one_line

# Hostile strings: each tries one way out of plain text. "# HEADMARK" would be a heading "HEADMARK".
HOSTILE = [
    "@octocat please look",
    "[x](https://evil)",
    "![i](https://evil/p.png)",
    "<img src=x onerror=alert(1)>",
    "# HEADMARK",
    "a | b",
    "\r\n| x |",
    "``tick`` `",
    "https://evil.example",
    "www.evil.example",
    "<https://evil>",
    "see #999 and acme/x#7",
    "*em* _u_ ~~s~~ $x$ &#64;ent",
]

# Tags tuneform's own markdown produces; anything else came from user text.
WRITER_TAGS = frozenset(
    [
        "p",
        "h2",
        "h3",
        "h4",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "strong",
        "em",
        "ul",
        "ol",
        "li",
        "pre",
        "details",
        "summary",
        "hr",
        "a",
        "br",
    ]
)
_MARKDOWN = MarkdownIt("commonmark").enable("table")
_GITHUB_TRIGGERS = re.compile(r"@\w+|#\d+|://|www\.", re.IGNORECASE)


@dataclass
class Rendered:
    """What a renderer made of a markdown text."""

    html: str
    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    text: str = ""  # all visible text, word joiners removed, whitespace collapsed
    prose: str = ""  # visible text outside code and links: where GitHub mentions and links
    headings: list[str] = field(default_factory=list)  # their text outside code
    tables: list[list[int]] = field(default_factory=list)  # cells per row, per table
    cells: list[str] = field(default_factory=list)  # the text of every table cell, as `text`


class _Reader(HTMLParser):
    def __init__(self, out: Rendered) -> None:
        super().__init__(convert_charrefs=True)
        self.out = out
        self.stack: list[str] = []
        self.text: list[str] = []
        self.prose: list[str] = []
        self.heading: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("br", "hr", "img"):
            return
        self.stack.append(tag)
        if tag == "table":
            self.out.tables.append([])
        elif tag == "tr":
            self.out.tables[-1].append(0)
        elif tag in ("td", "th"):
            self.out.tables[-1][-1] += 1
            self.cell = []
        elif re.fullmatch(r"h\d", tag):
            self.heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass
        if re.fullmatch(r"h\d", tag) and self.heading is not None:
            self.out.headings.append("".join(self.heading))
            self.heading = None
        if tag in ("td", "th") and self.cell is not None:
            self.out.cells.append(_squash("".join(self.cell)))
            self.cell = None
        self.text.append(" ")
        self.prose.append(" ")

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)
        if not {"code", "pre", "a"} & set(self.stack):
            self.prose.append(data)
            if self.heading is not None:
                self.heading.append(data)


def _squash(text: str) -> str:
    return " ".join(text.replace(WORD_JOINER, "").split())


def render(markdown: str) -> Rendered:
    out = Rendered(_MARKDOWN.render(markdown))
    reader = _Reader(out)
    reader.feed(out.html)
    reader.close()
    out.text, out.prose = _squash("".join(reader.text)), " ".join("".join(reader.prose).split())
    return out


def assert_inert(
    markdown: str, shown: Sequence[str] = (), *, links: int = 0, trusted: Sequence[str] = (), rows: Sequence[int] | None = None
) -> Rendered:
    """Assert that `markdown` holds no user-made markup and shows each string of `shown`.

    A GFM table drops a row's extra cells and pads missing ones, so a cell broken by a `|` shows
    as user text missing from `shown`, and a row started by a line break as a table longer than
    `rows` (the row count of each table, header included, when given).

    `links` is how many links the writer itself makes (a job URL): no more may appear, and none
    points at evil.example. `trusted` are references the writer makes on purpose ("#12", the PR
    a version was trained in). Returns the rendering for further checks.
    """
    out = render(markdown)
    tags = [tag for tag, _ in out.tags]
    assert set(tags) <= WRITER_TAGS, f"markup from user text: {sorted(set(tags) - WRITER_TAGS)}\n{out.html}"
    hrefs = [attrs.get("href", "") for tag, attrs in out.tags if tag == "a"]
    assert len(hrefs) == links and not any("evil" in href for href in hrefs), hrefs
    assert not any(heading.startswith("HEADMARK") for heading in out.headings), out.headings  # "# HEADMARK" as a heading
    if rows is not None:
        assert [len(table) for table in out.tables] == list(rows), f"tables of other lengths: {out.tables}\n{out.html}"
    found = [hit for hit in _GITHUB_TRIGGERS.findall(out.prose) if hit not in trusted]
    assert not found, f"GitHub would mention or link {found} in: {out.prose}"
    for text in shown:
        assert _squash(one_line(text)) in out.text, f"{one_line(text)!r} not shown in: {out.text}"
    return out
