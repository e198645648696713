"""Problems found in user input, carried with where they are and how to fix them.

Every user-facing error in tuneform is a `Problem`: the text, GitHub and JSON renderers all
read the same fields, so a message never loses its file, line or field on the way out.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One error or warning, located as precisely as the input allows (1-based line/column)."""

    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None
    severity: Severity = "error"

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "field": self.field, "message": self.message}


@dataclass
class Problems:
    """An ordered collection of problems for one file."""

    items: list[Problem] = field(default_factory=list)

    def error(self, message: str, *, line: int | None = None, column: int | None = None, field: str | None = None) -> None:
        self.items.append(Problem(message, line, column, field, "error"))

    def warn(self, message: str, *, line: int | None = None, column: int | None = None, field: str | None = None) -> None:
        self.items.append(Problem(message, line, column, field, "warning"))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "warning"]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ': did you mean 'x'?' suffix when a close match exists, else the valid choices."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f": did you mean '{close[0]}'?"
    if len(options) <= 12:
        return f" (expected one of: {', '.join(options)})"
    return ""
