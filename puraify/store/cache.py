"""A small cache for what is read from the store (or a service in front of it): values kept a
while, one read per key at a time however many callers ask, and nothing read before a change
kept after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

__all__ = ["SingleFlightCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlightCache(Generic[K, V]):
    """Values kept ``seconds`` (0: none kept, reads still shared while in flight); ``None``
    is never kept; ``forget()`` drops everything, also what a read in flight will return."""

    def __init__(
        self, seconds: float, *, maxsize: int = 65536, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._kept: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=max(seconds, 1e-9), timer=clock)
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0

    def get(self, key: K) -> V | None:
        return self._kept.get(key) if self.seconds > 0 else None

    async def load(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """``read()``'s value for ``key``, shared with every caller asking meanwhile."""
        generation = self._generation
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(read())
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._done(key, done))
        value = await asyncio.shield(loading)
        if value is not None and self.seconds > 0 and generation == self._generation:
            self._kept[key] = value
        return value

    def _done(self, key: K, done: asyncio.Future[V]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]

    def forget(self) -> None:
        self._generation += 1
        self._kept.clear()
        self._loading.clear()
