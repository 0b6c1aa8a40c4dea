"""Observability: structured logs now; metrics, events and the secret redactor arrive with the
service issues. May import structlog and the standard library only."""

from __future__ import annotations

from .logging import configure_logging

__all__ = ["configure_logging"]
