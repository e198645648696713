"""The one base of every tuneform exception: what went wrong, what to do about it, and how the
CLI exits for it.

Every exception tuneform raises on purpose derives from `TuneformError`, so the CLI has one
handler (cli/handler.py) that turns any of them into `error: <message>: <fix>` (or JSON) and the
documented exit code: 1 for a failure, 2 for a usage error. Anything else that escapes a command is
a bug and keeps its traceback. Problems found in a user's files while validating are not
exceptions: they stay `Problem` objects in reports (runfile/diagnostics.py).

Like huggingface_hub's typed errors, the type says what kind of failure it is, so callers catch
by type rather than by reading the message.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class TuneformError(Exception):
    """A failure tuneform explains: a message, an optional fix (the step that resolves it), and
    whether it is a usage error (the command was called wrongly: exit 2) or a failure (exit 1).

    `str()` gives the message followed by the fix, the one-line form errors have everywhere
    (`unknown key 'lerning_rate': did you mean 'learning_rate'?`), so code that embeds an error in
    a report keeps the fix. `message` and `fix` are the two parts, for JSON.
    """

    #: Whether every error of this class is a usage error; one instance may say otherwise.
    usage: ClassVar[bool] = False
    #: The exit code of a failure of this class; usage errors always exit 2.
    failure_code: ClassVar[int] = EXIT_FAIL

    def __init__(self, message: str = "", *, fix: str | None = None, usage: bool | None = None) -> None:
        super().__init__(message)
        self.fix = fix
        self._usage = usage

    @property
    def message(self) -> str:
        """What went wrong, without the fix."""
        return self._text()

    def _text(self) -> str:
        # the message as raised; `message` may be overridden by a subclass for its own purpose
        return str(self.args[0]) if self.args else ""

    @property
    def is_usage(self) -> bool:
        return type(self).usage if self._usage is None else self._usage

    @property
    def exit_code(self) -> int:
        """2 for a usage error, else the class's failure code (1 unless a command documents another)."""
        return EXIT_USAGE if self.is_usage else self.failure_code

    def __str__(self) -> str:
        return f"{self._text()}: {self.fix}" if self.fix else self._text()

    def as_json(self) -> dict[str, Any]:
        """What `--format json` prints for this error: `{"ok": false, "error", "fix"}`."""
        return {"ok": False, "error": self._text(), "fix": self.fix}


class UsageError(TuneformError, ValueError):
    """A command or library function called with arguments that cannot work together (exit 2).
    Also a ValueError: it is one, and callers that predate the base class catch that."""

    usage = True
