"""The one place errors become CLI exit codes and messages (DESIGN.md §4).

0 completed, 1 mission failed or cancelled, 2 invalid input (load, validation, safety),
3 internal error. Users see the structured error, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..errors import MissionError, PuraifyError, StoreError, TemplateError, ValidationError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INVALID",
    "EXIT_OK",
    "exit_code_for",
    "report_error",
]

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3


_INVALID_CODES = frozenset({"run_not_found", "run_busy"})


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, MissionError | TemplateError):
        return EXIT_INVALID
    if isinstance(error, StoreError):
        return EXIT_INVALID if error.code in _INVALID_CODES else EXIT_INTERNAL
    if isinstance(error, PuraifyError):
        return EXIT_FAILED
    return EXIT_INTERNAL


def report_error(console: Console, error: BaseException, *, as_json: bool) -> int:
    """Print ``error`` for a person (or as JSON) and return its exit code."""
    code = exit_code_for(error)
    if isinstance(error, PuraifyError):
        data: dict[str, Any] = error.to_dict()
    else:
        data = {"code": "internal_error", "message": f"{type(error).__name__}: {error}"}
    if as_json:
        console.print_json(json.dumps({"status": "error", "error": data}))
        return code
    if isinstance(error, ValidationError):
        console.print(f"[bold red]invalid mission[/] {error.file or ''}")
        for issue in error.issues:
            where = f"line {issue.line}: " if issue.line else ""
            colour = "red" if issue.severity == "error" else "yellow"
            console.print(
                f"  [{colour}]{issue.severity}[/] {where}{issue.message} [dim]({issue.code})[/]"
            )
        return code
    console.print(f"[bold red]error[/] {escape(str(error))}", highlight=False)
    return code
