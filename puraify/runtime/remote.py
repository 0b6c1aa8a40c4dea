"""The HTTP client a service of puraify uses to ask another (Engine Control, the vault): its
base URL, this engine's ``X-Engine-ID`` and ``X-Engine-Key``, a timeout, and no proxy or netrc
from the environment (the operator configured the address)."""

from __future__ import annotations

import httpx

__all__ = ["engine_client"]


def engine_client(
    url: str,
    engine_id: str,
    key: str,
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url.rstrip("/"),
        headers={"X-Engine-ID": engine_id, "X-Engine-Key": key},
        timeout=timeout,
        trust_env=False,
        transport=transport,
    )
