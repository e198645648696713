"""The `tuneform` command: click commands that parse, call the library, render, and map errors to exit codes.

The top of the import graph: nothing in tuneform imports it.
"""

from tuneform.cli.commands import main

__all__ = ["main"]
