"""Parse JSON from untrusted files (data rows, eval suites) so that every failure is explained.

`json.loads` fails in three ways on hostile or odd input, and only one is a JSONDecodeError:
nesting deeper than Python's recursion limit raises RecursionError, and an integer longer than
Python's int-string conversion limit (4,300 digits) raises a bare ValueError whose advice
(`sys.set_int_max_str_digits`) is for programmers, not for the author of the file. Both are
turned into a `JsonError` with a fix.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tuneform.core.errors import TuneformError

BOM = "\ufeff"


class JsonError(TuneformError):
    """A JSON text that cannot be used; `line` and `column` are 1-based where the parser knows them."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.line, self.column = line, column


def decode_text(raw: bytes) -> str:
    """UTF-8 text of a file with a leading byte order mark dropped, as run files are read (YAML
    skips a BOM): editors on Windows write one, and it would otherwise spoil the first row."""
    return raw.decode("utf-8", errors="replace").removeprefix(BOM)


def loads(text: str) -> Any:
    """`json.loads` of one document; raises JsonError (message, column, fix) on any failure."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonError(exc.msg, line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        depth = f"{sys.getrecursionlimit():,}"
        raise JsonError(f"nested deeper than Python can read (about {depth} levels)", fix="flatten the value") from None
    except ValueError:  # the int-string conversion limit: the only other ValueError json raises
        limit = sys.get_int_max_str_digits()
        raise JsonError(f"a number longer than {limit:,} digits", fix="write it in quotes, as a string") from None
