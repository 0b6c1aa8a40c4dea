"""The command line: Typer + rich, one module per command group.

May import everything below it; nothing below ``cli`` imports Typer.
Invariants: exit codes come from ``cli.errors`` only; users never see a traceback; Ctrl-C and
SIGTERM mean the same thing at every moment (see ``main``).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["Interrupted", "main"]


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM before a run started (not ``KeyboardInterrupt``, which Typer would
    turn into an exit code of its own)."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def main() -> None:
    """Console entry point.

    Ctrl-C (or SIGTERM) means, whenever it comes: before a run exists, the command stops with
    exit 1 and nothing started (with ``--json``, the failure envelope, code ``cancelled``);
    while a run executes, the run is cancelled, recorded ``cancelled``, printed, exit 1; once
    the run has ended, its outcome stands and is printed in full. Installed before anything
    heavy is imported, so start-up is covered too."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    as_json = "--json" in sys.argv[1:]
    try:
        from .app import run_app

        run_app()
    except Interrupted:
        from ..errors import PuraifyError
        from ._shared import console, err_console
        from .errors import report_error

        error = PuraifyError("interrupted before the run started; nothing ran", code="cancelled")
        sys.exit(report_error(console if as_json else err_console, error, as_json=as_json))
