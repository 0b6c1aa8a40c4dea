"""The vault's cost: fetching and opening a credential, uncached (read from SQLite and
decrypted every time) and cached (the opened credential kept, ``vault_cache_seconds``)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from puraify.service.compose import open_database
from puraify.settings import Settings
from puraify.vault.crypto import Keyring
from puraify.vault.store import VaultStore

from ._util import Report


async def _fetch(home: Path) -> tuple[float, float]:
    db = await open_database(Settings(home=home))
    keys = Keyring([Keyring.new_key()])
    figures = []
    try:
        await VaultStore(db, keys).put("p", "slack", "oauth2", {"access_token": "x" * 64})
        for cache, n in ((0.0, 2_000), (60.0, 100_000)):
            store = VaultStore(db, keys, cache_seconds=cache)
            await store.value("p", "slack")  # warm (and its last use written)
            start = time.perf_counter()
            for _ in range(n):
                found = await store.value("p", "slack")
            figures.append((time.perf_counter() - start) / n)
            assert found is not None
            assert found.value is not None
    finally:
        await db.dispose()
    return figures[0], figures[1]


def run(report: Report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        uncached, cached = asyncio.run(_fetch(Path(tmp) / "home"))
    report.add("credential fetch + decrypt, uncached (SQLite)", uncached * 1e3, "ms", target=1.0)
    report.add("credential fetch, cached", cached * 1e6, "us", target=50.0)
