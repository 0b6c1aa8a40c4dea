"""Helpers shared by tests (fixtures stay in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_for"]


def wait_for(
    predicate: Callable[[], object], seconds: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it is true: a readiness signal, never a guess at how long
    something takes (the deadline only bounds a test that would otherwise hang)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {seconds} s")
        time.sleep(0.05)
