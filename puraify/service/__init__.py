"""The application service: one home for the run lifecycle, below the CLI and the HTTP API.

May import: every layer above it (``errors``, ``settings``, ``mission``, ``templating``,
``actions``, ``runtime``, ``store``, ``observability``). Never FastAPI, Starlette, Typer or rich:
``api/`` and ``cli/`` translate HTTP and argv into calls on it.
Invariants: one composition function builds it from settings and a profile; a run keeps the
profile and project it was created under for every later resume, retry or cancel.
"""
