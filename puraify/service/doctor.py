"""``puraify doctor``: what this machine and configuration give the engine, checked for real.

Each check does what the engine would do (open the store, start a sandbox worker, run a
contained command, look at the disks) and says what it found: ``ok``, ``warning`` (it runs,
with less protection or margin than it could have) or ``failed`` (the engine cannot work so).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..actions import default_registry
from ..errors import PuraifyError
from ..runtime.guards.commands import CONTAINMENT_MEANING, containment, containment_reason
from ..runtime.sandbox import ActionPool, Job, action_ref
from ..settings import Settings
from ..store.database import HEAD_REVISION
from .compose import choose_profile, open_database

__all__ = ["Check", "diagnose"]

Status = Literal["ok", "warning", "failed"]
_WORKER_SECONDS = 60.0  # a worker that has not answered by then is not coming


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def diagnose(settings: Settings) -> list[Check]:
    """Every check, in the order an operator reads them."""
    checks: list[Callable[[Settings], Awaitable[Check]]] = [
        _profile,
        _commands,
        _store,
        _disk,
        _workers,
    ]
    return [await check(settings) for check in checks]


async def _profile(settings: Settings) -> Check:
    mode = choose_profile(settings, listen=settings.api_host)
    if mode == "local":
        return Check(
            "profile",
            "warning",
            "`puraify serve` runs with the local profile (mode = local): command steps run as "
            "this user, templates read the environment, loopback addresses are reachable",
        )
    how = "mode = server" if settings.mode else "the default for anything that listens"
    return Check("profile", "ok", f"`puraify serve` runs with the server profile ({how})")


async def _commands(settings: Settings) -> Check:
    if not settings.command_contain:
        return Check(
            "command sandbox",
            "warning",
            "off (command_contain = false): " + CONTAINMENT_MEANING["process-group"],
        )
    mode = await asyncio.to_thread(containment)
    detail = CONTAINMENT_MEANING[mode]
    if mode != "sandbox":
        detail += f" (the sandbox is refused here: {containment_reason()})"
    listed = ", ".join(settings.command_allow or ()) or "none listed"
    detail += f"; the server profile runs only the programs of command_allow: {listed}"
    status: Status = "ok" if mode == "sandbox" else "warning"
    if os.getuid() == 0:
        status = "warning"
        detail += (
            "; the engine runs as root, so its commands are root to the kernel inside their "
            "sandbox (without privileges, but with root's file permissions and no process "
            "limit): run puraify as an unprivileged user"
        )
    return Check("command sandbox", status, detail)


async def _store(settings: Settings) -> Check:
    try:
        url = make_url(settings.store_url)
    except (ArgumentError, ValueError):
        return Check("run store", "failed", "database_url is not a database URL")
    # a password can also ride in the query (?password=...): no query value is shown
    where = url.set(query={k: "***" for k in url.query}).render_as_string(hide_password=True)
    try:
        db = await open_database(settings)
    except PuraifyError as exc:
        return Check("run store", "failed", f"{where}: {exc.message}")
    except Exception as exc:
        return Check("run store", "failed", f"{where}: cannot open it ({type(exc).__name__})")
    try:
        revision = await db.revision()
    finally:
        await db.dispose()
    return Check("run store", "ok", f"{where}, schema {revision} (this release: {HEAD_REVISION})")


async def _disk(settings: Settings) -> Check:
    places = {
        "home": settings.home,
        "workspaces": settings.workspace or settings.home / "workspaces",
    }
    found = []
    status: Status = "ok"
    for what, where in places.items():
        try:
            free = shutil.disk_usage(_existing(where)).free
        except OSError as exc:
            return Check("disk", "failed", f"{what} ({where}): {exc.strerror or exc}")
        if free < settings.ready_min_free_bytes:
            status = "failed"
        found.append(f"{what} {free // (1024 * 1024)} MiB free")
    minimum = settings.ready_min_free_bytes // (1024 * 1024)
    return Check("disk", status, f"{', '.join(found)} (not ready below {minimum} MiB)")


async def _workers(settings: Settings) -> Check:
    if settings.action_workers == 0:
        return Check(
            "action sandbox",
            "warning",
            "off (action_workers = 0): parsers, schema checks, CSV and file searches run on "
            "the event loop, where a timeout cannot stop them",
        )
    pool = ActionPool(1, max_memory_bytes=settings.action_max_memory_bytes)
    action = default_registry().get("parse_json")
    job = Job(
        action=action_ref(action),
        params=action.Params.model_validate({"content": '{"ok": true}'}),
        run_id="doctor",
        step_id="doctor",
        attempt=1,
        workspace=str(Path.cwd()),
    )
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_WORKER_SECONDS):
            await pool.run(job)
    except (PuraifyError, TimeoutError, OSError) as exc:
        return Check("action sandbox", "failed", f"a worker did not answer: {exc}")
    finally:
        await asyncio.to_thread(pool.close)
    took = (time.perf_counter() - started) * 1000
    cap = settings.action_max_memory_bytes // (1024 * 1024)
    return Check(
        "action sandbox",
        "ok",
        f"{settings.action_workers} worker processes, {cap} MiB each; one started and "
        f"answered in {took:.0f} ms",
    )


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
