"""Structured logging: structlog to stderr, JSON lines for machines or a console renderer for
people. Configured once at the edge (CLI, app factory, worker); library code only asks for a
logger and binds context (run_id, step_id, action) to it."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

from ..redaction import OPERATOR, RUNS

__all__ = ["configure_logging"]


def configure_logging(
    *,
    level: str = "INFO",
    fmt: Literal["json", "console", "auto"] = "auto",
    stream: TextIO | None = None,
    cache: bool = False,
) -> None:
    """Send every structlog event to ``stream`` (stderr by default), never to stdout, so that
    machine-readable command output stays clean. Each line is redacted as written (the
    vault's values and known token shapes: ``puraify.redaction``), tracebacks included.

    ``cache`` lets each module's logger resolve its configuration once (long-lived processes:
    the server resolves a logger per request otherwise, ~2 % of a request's CPU); leave it off
    where logging is reconfigured later in the same process (tests). ``fmt="auto"``: JSON
    lines unless the stream is a terminal.
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _Redacted(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=cache,
    )


class _Redacted:
    """Renders a line with ``renderer``, then redacts it: of its run's values when it names a
    run (``run_id``), of the operator's secrets and known token shapes always."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method: str, event: Any) -> Any:
        run = RUNS.get(event.get("run_id"))
        line = self.renderer(logger, method, event)
        if not isinstance(line, str):
            return line
        if run is not None:
            line = run.text(line)
        return OPERATOR.text(line)
