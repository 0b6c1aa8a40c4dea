"""Observability: structured logs (redacted as they are written), metrics and run events."""

from __future__ import annotations

from .logging import configure_logging

__all__ = ["configure_logging"]
