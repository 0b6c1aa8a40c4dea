"""Engine Control's registry and policy on SQLite and PostgreSQL: audit rows any caller can
shape are stored (cut and cleaned), never lost with their batch; a change made while a verdict
is being read is not undone by it; events added while a batch is written are written next."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from puraify.actions import default_registry
from puraify.control.policy import AuditLog, LocalPolicy
from puraify.control.registry import ControlRegistry
from puraify.control.rules import decide
from puraify.errors import ControlError
from puraify.store import Database
from tests.helpers import poll


async def test_audit_rows_any_caller_shapes_are_stored(database: Database) -> None:
    """F: a request id longer than its column, a platform with NUL, an over-long action:
    each row is cut and cleaned, and none takes the others of its batch with it."""
    registry = ControlRegistry(database)
    events: list[dict[str, Any]] = [
        {"kind": "check", "request_id": "r" * 100, "engine_id": "e", "platform": "slack",
         "action": "send", "allowed": True, "reason": "allowed", "data": {}},
        {"kind": "event", "engine_id": "e", "platform": "a\x00b" + "p" * 300,
         "action": "x" * 500, "data": {"nul": "\x00", "nan": float("nan")}},
        {"kind": "check", "engine_id": "e", "platform": "gmail", "action": "send",
         "allowed": False, "reason": "permission_missing", "data": {}},
    ]  # fmt: skip
    for event in events:
        event["at"] = __import__("datetime").datetime.now(__import__("datetime").UTC)
    assert await registry.record(events) == 3
    stored = await registry.events(engine_id="e")
    assert len(stored) == 3
    by_kind = {(e["kind"], e["platform"][:5]): e for e in stored}
    assert by_kind[("check", "slack")]["request_id"] == "r" * 64
    odd = by_kind[("event", "a\ufffdbpp")]
    assert len(odd["platform"]) == 128 and len(odd["action"]) == 200
    assert odd["data"] == {"nul": "\ufffd", "nan": "NaN"}


async def test_a_change_made_while_a_verdict_is_read_is_not_undone(database: Database) -> None:
    """F: a verdict read before a change is not cached after it (the change applies at once
    in this process, as documented)."""
    registry = ControlRegistry(database)
    await registry.register("e", {"*": {"*": []}}, by="test")
    policy = LocalPolicy(
        registry, default_registry(), AuditLog(registry), flag_defaults={}, cache_seconds=60
    )
    gate, read = asyncio.Event(), asyncio.Event()
    real = registry.state

    async def slow(engine_id: str, platform: str) -> Any:
        found = await real(engine_id, platform)  # read before the change: "active"
        read.set()
        await gate.wait()
        return found

    registry.state = slow  # type: ignore[method-assign]
    reading = asyncio.create_task(policy.check("e", "slack", "send"))
    await read.wait()
    await registry.set_platform("slack", "maintenance", by="test")
    policy.invalidate()  # what ControlService does after every change
    gate.set()
    assert (await reading).allowed  # read before the change
    registry.state = real  # type: ignore[method-assign]
    after = await policy.check("e", "slack", "send")
    assert not after.allowed and after.reason == "platform_maintenance"
    await policy.audit.aclose()


async def test_events_added_while_a_batch_is_written_are_written_next(
    database: Database,
) -> None:
    registry = ControlRegistry(database)
    audit = AuditLog(registry, flush_seconds=0.01)
    real = registry.record
    writing = asyncio.Event()
    release = asyncio.Event()

    async def slow(events: Any) -> int:
        writing.set()
        await release.wait()
        return await real(events)

    registry.record = slow  # type: ignore[method-assign]
    now = __import__("datetime").datetime.now(__import__("datetime").UTC)
    audit.add({"kind": "event", "engine_id": "e", "data": {"n": 1}, "at": now})
    await writing.wait()
    audit.add({"kind": "event", "engine_id": "e", "data": {"n": 2}, "at": now})
    release.set()

    async def stored() -> int:
        return len(await registry.events(engine_id="e"))

    await poll(stored, lambda n: n == 2, what="both events stored without another one")
    await audit.aclose()


@pytest.mark.parametrize("engine_id", ["bøt", " lead", "trail ", "机器人", "a\x00b", "", "x" * 129])
async def test_engine_ids_a_header_cannot_carry_are_refused(
    database: Database, engine_id: str
) -> None:
    with pytest.raises(ControlError) as caught:
        await ControlRegistry(database).register(engine_id, {}, by="test")
    assert caught.value.code == "invalid_request"


async def test_an_id_differing_only_in_case_is_taken(database: Database) -> None:
    registry = ControlRegistry(database)
    await registry.register("admin", {}, by="test")
    with pytest.raises(ControlError) as caught:
        await registry.register("Admin", {}, by="test")
    assert caught.value.code == "engine_exists"


def test_control_admin_is_never_granted_by_a_wildcard() -> None:
    from puraify.control.rules import EngineRecord

    everything = EngineRecord("exec", "k", {"*": {"*": ["*"]}})
    verdict = decide(everything, "control", "admin")
    assert not verdict.allowed and verdict.reason == "permission_missing"
    admin = EngineRecord("admin", "k", {"control": {"admin": []}})
    assert decide(admin, "control", "admin").allowed
