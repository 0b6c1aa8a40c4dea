"""The vault's cost: fetching and opening a credential, uncached (read from SQLite and
decrypted every time) and cached (the opened credential kept, ``vault_cache_seconds``); and as
the execution service reads it from a separate ``puraify serve vault`` (``vault_url``): one
``GET /vault/token`` per fetch, uncached, with its engine check and audit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from puraify.service.compose import open_database
from puraify.settings import Settings
from puraify.vault.access import HttpVault
from puraify.vault.crypto import Keyring
from puraify.vault.store import VaultStore

from ._util import Report, free_port, puraify_json, wait_ready


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


async def _fetch_http(url: str, key: str, n: int) -> float:
    vault = HttpVault(url, "puraify-execution", key, cache_seconds=0)
    try:
        for _ in range(20):  # warm: connections open, the server's caches filled
            assert await vault.fetch("p", "slack", None) is not None
        start = time.perf_counter()
        for _ in range(n):
            await vault.fetch("p", "slack", None)
        return (time.perf_counter() - start) / n
    finally:
        await vault.aclose()


def _http(home: Path) -> float:
    env = {**os.environ, "PURAIFY_HOME": str(home), "PURAIFY_LOG_LEVEL": "WARNING"}
    puraify_json("init", env=env)
    key = puraify_json("engines", "rotate-key", "puraify-execution", env=env)["engine_key"]
    subprocess.run(
        [sys.executable, "-m", "puraify", "vault", "set", "p", "slack", "--type", "token"],
        env=env,
        input="xoxb-" + "1" * 40,
        capture_output=True,
        check=True,
        text=True,
    )
    port = free_port()
    with open(home.parent / "vault.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "puraify", "serve", "vault", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            return asyncio.run(_fetch_http(url, key, 500))
        finally:
            server.terminate()
            server.wait(timeout=30)


def run(report: Report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        uncached, cached = asyncio.run(_fetch(Path(tmp) / "home"))
        over_http = _http(Path(tmp) / "served" / "home")
    report.add("credential fetch + decrypt, uncached (SQLite)", uncached * 1e3, "ms", target=1.0)
    report.add("credential fetch, cached", cached * 1e6, "us", target=50.0)
    report.add(
        "credential fetch from a separate vault over HTTP, not kept by the caller",
        over_http * 1e3,
        "ms",
        target=10.0,
    )
