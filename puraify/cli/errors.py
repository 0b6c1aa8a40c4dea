"""The one place errors become CLI exit codes and messages (DESIGN.md §4).

0 completed, 1 mission failed or cancelled, 2 invalid input (load, validation, safety),
3 internal error. A registered code exits as ``puraify.codes`` says (docs/errors.md lists them);
any other error exits as the nearest class in its MRO that ``_EXIT_BY_TYPE`` lists. Users see
the structured error, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..codes import ExitCode, describe
from ..errors import (
    MissionError,
    PuraifyError,
    StoreError,
    TemplateError,
    ValidationError,
    failure_envelope,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INVALID",
    "EXIT_OK",
    "exit_code_for",
    "report_error",
    "write_json",
]

EXIT_OK = ExitCode.OK
EXIT_FAILED = ExitCode.FAILED
EXIT_INVALID = ExitCode.INVALID
EXIT_INTERNAL = ExitCode.INTERNAL

_EXIT_BY_TYPE: Mapping[type[BaseException], ExitCode] = {
    MissionError: EXIT_INVALID,
    TemplateError: EXIT_INVALID,
    StoreError: EXIT_INTERNAL,
    PuraifyError: EXIT_FAILED,
}


def exit_code_for(error: BaseException) -> int:
    """Exit code for ``error``: its registered code's, else its nearest listed class's, else 3."""
    if isinstance(error, PuraifyError):
        info = describe(error.code)
        if info is not None and info.exit_code is not None:
            return int(info.exit_code)
    for cls in type(error).__mro__:
        if cls in _EXIT_BY_TYPE:
            return int(_EXIT_BY_TYPE[cls])
    return int(EXIT_INTERNAL)


def write_json(data: Any) -> None:
    """Machine output: JSON written raw to stdout, never re-rendered (``data`` may already be
    JSON text)."""
    text = data if isinstance(data, str) else json.dumps(data, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def report_error(console: Console, error: BaseException, *, as_json: bool) -> int:
    """Print ``error`` for a person, or with ``as_json`` the failure envelope on stdout (the
    same as the HTTP API's: ``{"status": "fail", "reason", "error": {...}}``); return its exit
    code."""
    code = exit_code_for(error)
    if as_json:
        envelope = failure_envelope(error)
        if not isinstance(error, PuraifyError):  # the operator's own machine: say what broke
            envelope["reason"] = envelope["error"]["message"] = f"{type(error).__name__}: {error}"
        write_json(envelope)
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
