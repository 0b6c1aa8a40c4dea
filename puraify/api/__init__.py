"""The HTTP API (FastAPI): the execution service's routes, auth, error mapping and middleware.

May import everything above it; nothing below ``api`` imports FastAPI.
Invariants: every route except health answers 401 without valid credentials; errors are the
envelope of DESIGN.md §4 with one status mapping (``api.errors``); a token sees only its
project's runs (404 otherwise, no existence oracle).
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
