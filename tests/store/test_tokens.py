"""API tokens: verification, the short cache of verified tokens, revocation across processes.

Time is a ``ManualClock``: the cache's timer and the tokens' timestamps move only when a test
advances them, so no window depends on how fast the store answers. Store reads are counted
through SQLAlchemy's cursor events, not by patching the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from puraify.store import Database, TokenStore
from tests.helpers import ManualClock


class Lookups:
    """How many times the store was asked for a token (SELECTs on ``api_tokens``)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_tokens" in statement:
            self.count += 1


@pytest.fixture
def lookups(database: Database) -> Iterator[Lookups]:
    counter = Lookups()
    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", counter)
    yield counter
    event.remove(engine, "before_cursor_execute", counter)


def cached_store(database: Database, clock: ManualClock, **options: Any) -> TokenStore:
    return TokenStore(database, clock=clock.monotonic, now=clock.now, **options)


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
    clock = ManualClock()
    server = cached_store(database, clock, cache_seconds=0.5)  # one API process
    admin = TokenStore(database)  # `puraify tokens revoke`, another process
    token_id, token = await admin.create("p", {"execute"})
    assert await server.verify(token) is not None
    assert await admin.revoke(token_id)
    clock.advance(0.49)
    assert await server.verify(token) is not None  # still trusted from the cache ...
    clock.advance(0.02)
    assert await server.verify(token) is None  # ... and refused once the cache time is over


async def test_a_revocation_in_the_same_process_takes_effect_at_once(database: Database) -> None:
    server = TokenStore(database, cache_seconds=60)
    token_id, token = await server.create("p", {"execute"})
    assert await server.verify(token) is not None
    assert await server.revoke(token_id)
    assert await server.verify(token) is None


async def test_the_cache_never_outlives_the_token(database: Database) -> None:
    clock = ManualClock()
    server = cached_store(database, clock, cache_seconds=60)
    _, token = await server.create("p", {"execute"}, ttl=timedelta(seconds=0.4))
    assert await server.verify(token) is not None
    clock.advance(0.39)
    assert await server.verify(token) is not None
    clock.advance(0.02)
    assert await server.verify(token) is None


async def test_failures_are_not_cached_and_the_cache_is_bounded(
    database: Database, lookups: Lookups
) -> None:
    server = TokenStore(database, cache_seconds=60, cache_size=3)
    made = [token for _, token in [await server.create("p", {"execute"}) for _ in range(5)]]
    for token in made:
        assert await server.verify(token) is not None
    assert lookups.count == 5
    for token in made[2:]:  # the three most recent are held ...
        assert await server.verify(token) is not None
    assert lookups.count == 5
    assert await server.verify(made[0]) is not None  # ... the first was evicted: read again
    assert lookups.count == 6
    for _ in range(2):  # an unknown token is asked for every time
        assert await server.verify("pfy_unknown_token") is None
    assert lookups.count == 8


async def test_concurrent_verifications_share_one_lookup(
    database: Database, lookups: Lookups
) -> None:
    """When a busy token's cache entry expires, the requests arriving together wait for one
    read of the store, not one read each."""
    clock = ManualClock()
    server = cached_store(database, clock, cache_seconds=0.2)
    _, token = await server.create("p", {"execute"})
    results = await asyncio.gather(*(server.verify(token) for _ in range(50)))
    assert all(r is not None and r.project_id == "p" for r in results)
    assert lookups.count == 1
    clock.advance(0.1)
    assert all(await asyncio.gather(*(server.verify(token) for _ in range(50))))
    assert lookups.count == 1  # still cached
    clock.advance(0.2)  # expired: the next wave again costs one lookup
    results = await asyncio.gather(*(server.verify(token) for _ in range(50)))
    assert all(r is not None for r in results) and lookups.count == 2
