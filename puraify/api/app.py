"""The FastAPI app factory: ``create_app(settings)`` puts the HTTP edge over the application
that ``puraify.service.compose`` builds; middleware gives every request an id, a body-size
limit, a log line and metrics. Routes translate HTTP into calls on ``app.state.service``.
"""

from __future__ import annotations

import errno
import gc
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..actions import default_registry
from ..errors import PuraifyError, StoreError
from ..observability.logging import configure_logging
from ..observability.logging_hook import LoggingHook
from ..observability.metrics import Metrics, MetricsHook
from ..service import compose
from ..settings import Settings
from .errors import ApiError, error_body, status_for

__all__ = ["create_app", "create_app_from_environment"]

_log = structlog.get_logger("puraify.api")


class _BodyTooLarge(Exception):
    pass


class RequestContext:
    """Pure ASGI middleware: request id (``X-Request-ID`` in and out), body-size limit, one
    structured log line and metrics per request."""

    def __init__(self, app: ASGIApp, *, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = (
            incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        declared = headers.get(b"content-length")
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                raise _BodyTooLarge
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            error = ApiError(
                f"request body is larger than {self.max_body} bytes", code="body_too_large"
            )
            response = JSONResponse(error_body(error, request_id), status_code=413)
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            took = time.perf_counter() - started
            self.metrics.requests.labels(path, scope["method"], str(status["code"])).inc()
            self.metrics.request_seconds.labels(path).observe(took)
            _log.info(
                "request",
                method=scope["method"],
                route=path,
                status=status["code"],
                duration_ms=round(took * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def create_app(
    settings: Settings,
    *,
    environ: dict[str, str] | None = None,
    host: str | None = None,
    server_process: bool = False,
    services: str = "all",
) -> FastAPI:
    """Build the HTTP API over the application ``compose`` builds; ``environ`` is the process
    environment (read at the edge). The API always listens, so it runs the server profile
    unless the operator set ``PURAIFY_MODE=local``; ``host`` (default ``api_host``) is where it
    listens, for the warning that mode gives. ``server_process``: this process only serves
    this app (loggers resolve their configuration once). ``services``: ``all``, or only
    ``execution`` or ``control``."""
    configure_logging(level=settings.log_level, fmt=settings.log_format, cache=server_process)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = default_registry()
        platforms = {a.name: a.platform for a in registry.actions()}
        async with compose(
            settings,
            listen=host or settings.api_host,
            environ=environ if environ is not None else dict(os.environ),
            cwd=Path.cwd(),
            registry=registry,
            hooks=[MetricsHook(metrics, platforms), LoggingHook(platforms)],
        ) as application:
            state = app.state
            state.application = application
            state.settings = settings
            state.db = application.db
            state.store = application.store
            state.tokens = application.tokens
            state.idempotency = application.idempotency
            state.service = application.runs
            state.registry = application.registry
            state.metrics = metrics
            if services in ("all", "execution"):  # Engine Control or the vault alone run none
                await application.runs.resume_orphans()
            if server_process:
                # Everything built so far (modules, app, engine, SQLAlchemy's caches) lives as
                # long as the process: keep it out of the cyclic collector's full passes, which
                # otherwise walk it all every few seconds under load (the p99 latency).
                gc.collect()
                gc.freeze()
            yield

    from .schemas import Envelope

    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": Envelope, "description": text}
        for status, text in (
            (400, "malformed request"),
            (401, "no valid credentials"),
            (403, "denied"),
            (413, "body too large"),
            (422, "invalid input"),
        )
    }
    app = FastAPI(
        title="puraify execution engine",
        version="0.1.0",
        description="Single actions and mission DAGs, run reliably and securely.",
        lifespan=lifespan,
        responses=errors,
    )
    app.add_middleware(RequestContext, max_body=settings.max_body_bytes, metrics=metrics)

    @app.exception_handler(PuraifyError)
    async def puraify_error(request: Request, exc: PuraifyError) -> JSONResponse:
        return JSONResponse(error_body(exc, _request_id(request)), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        error = ApiError(
            f"{where or 'request'}: {first.get('msg', 'invalid')}",
            code="invalid_request",
            field=where or None,
        )
        return JSONResponse(error_body(error, _request_id(request)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        error = ApiError(str(exc.detail), code=code)
        return JSONResponse(error_body(error, _request_id(request)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        if _store_fault(exc):  # down, or its disk full: the caller should try again later
            _log.error("store_unavailable", path=request.url.path, error=type(exc).__name__)
            error = StoreError(
                f"the run store cannot be used right now ({type(exc).__name__}); try again later",
                code="store_unavailable",
            )
            return JSONResponse(error_body(error, _request_id(request)), status_code=503)
        _log.exception("unhandled_error", path=request.url.path)
        return JSONResponse(error_body(exc, _request_id(request)), status_code=500)

    from .routes import control, execution, oauth, runs, system, vault

    app.include_router(system.router)
    if services in ("all", "execution"):
        app.include_router(execution.router)
        app.include_router(runs.router)
    if services in ("all", "control"):
        app.include_router(control.router)
    if services in ("all", "vault"):
        app.include_router(vault.router)
        app.include_router(oauth.router)
    return app


def create_app_from_environment(host: str | None = None, services: str = "all") -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from ``PURAIFY_*``;
    the server profile unless ``PURAIFY_MODE=local``. ``host``: where it listens, when known
    (uvicorn does not tell its factory, so an unknown address counts as exposed)."""
    settings = Settings()
    listen = host or "an address uvicorn was given"
    return create_app(
        settings, environ=dict(os.environ), host=listen, server_process=True, services=services
    )


def _store_fault(exc: BaseException) -> bool:
    """Whether ``exc`` says the store (or the disk under it) cannot be used now, rather than
    that something is wrong with the request or the code."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, ConnectionError):  # the database server is down or went away
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
