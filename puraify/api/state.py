"""Typed access to what the app factory built, for routes (instead of untyped ``app.state``)."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from ..service import Application, RunService

__all__ = ["application", "runs"]


def application(request: Request) -> Application:
    """The application ``compose`` built for this process."""
    return cast(Application, request.app.state.application)


def runs(request: Request) -> RunService:
    """The run service: every route that starts, waits for or changes a run goes through it."""
    return application(request).runs
