"""What a fake answers instead of serving its next requests, as a test scripts it: a rate
limit (429 with ``Retry-After``), a server error (5xx) or no answer at all. Each fake renders
them in its platform's own error shape."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["Fault", "Faults"]


@dataclass(frozen=True)
class Fault:
    kind: Literal["rate_limit", "error"]
    status: int
    retry_after: float = 0.0


class Faults:
    """A script of faults, consumed one per request (``next_fault``)."""

    def __init__(self) -> None:
        self._faults: list[Fault | None] = []  # None: hang
        self._faults_lock = threading.Lock()

    def rate_limit_next(self, times: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``times`` requests 429 with ``Retry-After: retry_after``."""
        with self._faults_lock:
            self._faults += [Fault("rate_limit", 429, retry_after)] * times

    def fail_next(self, times: int = 1, status: int = 503) -> None:
        """Answer the next ``times`` requests ``status`` (429 is a rate limit)."""
        fault = Fault("rate_limit", 429) if status == 429 else Fault("error", status)
        with self._faults_lock:
            self._faults += [fault] * times

    def hang_next(self, times: int = 1) -> None:
        """Never answer the next ``times`` requests (until the client gives up)."""
        with self._faults_lock:
            self._faults += [None] * times

    async def next_fault(self) -> Fault | None:
        """The fault to answer this request with, if one is scripted; a hang waits here."""
        with self._faults_lock:
            if not self._faults:
                return None
            fault = self._faults.pop(0)
        if fault is None:
            await asyncio.Event().wait()
        return fault
