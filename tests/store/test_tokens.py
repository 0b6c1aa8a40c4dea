"""API tokens: verification, the short cache of verified tokens, revocation across processes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from puraify.store import Database, TokenStore


async def test_verify_checks_hash_scope_and_revocation(database: Database) -> None:
    tokens = TokenStore(database)
    token_id, token = await tokens.create("p", {"execute"})
    principal = await tokens.verify(token)
    assert principal is not None and principal.project_id == "p"
    assert principal.allows("execute") and not principal.allows("runs:read")
    assert await tokens.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await tokens.verify("not-a-token") is None
    assert await tokens.revoke(token_id)
    assert await tokens.verify(token) is None


async def test_a_revocation_elsewhere_takes_effect_within_the_cache_time(
    database: Database,
) -> None:
    server = TokenStore(database, cache_seconds=0.5)  # one API process
    admin = TokenStore(database)  # `puraify tokens revoke`, another process
    token_id, token = await admin.create("p", {"execute"})
    assert await server.verify(token) is not None
    assert await admin.revoke(token_id)
    assert await server.verify(token) is not None  # still trusted from the cache ...
    await asyncio.sleep(0.6)
    assert await server.verify(token) is None  # ... and refused once the cache time is over


async def test_a_revocation_in_the_same_process_takes_effect_at_once(database: Database) -> None:
    server = TokenStore(database, cache_seconds=60)
    token_id, token = await server.create("p", {"execute"})
    assert await server.verify(token) is not None
    assert await server.revoke(token_id)
    assert await server.verify(token) is None


async def test_the_cache_never_outlives_the_token(database: Database) -> None:
    server = TokenStore(database, cache_seconds=60)
    _, token = await server.create("p", {"execute"}, ttl=timedelta(seconds=0.4))
    assert await server.verify(token) is not None
    await asyncio.sleep(0.5)
    assert await server.verify(token) is None


async def test_failures_are_not_cached_and_the_cache_is_bounded(database: Database) -> None:
    server = TokenStore(database, cache_seconds=60, cache_size=3)
    made = [await server.create("p", {"execute"}) for _ in range(5)]
    for _, token in made:
        assert await server.verify(token) is not None
    assert len(server._cache) == 3
    assert await server.verify("pfy_unknown_token") is None
    assert len(server._cache) == 3


async def test_concurrent_verifications_share_one_lookup(database: Database) -> None:
    """When a busy token's cache entry expires, the requests arriving together wait for one
    read of the store, not one read each."""
    server = TokenStore(database, cache_seconds=0.2)
    _, token = await server.create("p", {"execute"})
    lookups = 0
    real = server._lookup

    async def counting(digest: str) -> Any:
        nonlocal lookups
        lookups += 1
        return await real(digest)

    server._lookup = counting  # type: ignore[method-assign]
    results = await asyncio.gather(*(server.verify(token) for _ in range(50)))
    assert all(r is not None and r.project_id == "p" for r in results)
    assert lookups == 1
    await asyncio.sleep(0.3)  # expired: the next wave again costs one lookup
    results = await asyncio.gather(*(server.verify(token) for _ in range(50)))
    assert all(r is not None for r in results) and lookups == 2
