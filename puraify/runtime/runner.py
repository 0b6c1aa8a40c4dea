"""Step runners: how one attempt of one step gets executed.

The executor decides order, retries and timeouts; a runner only runs an attempt. The
in-process runner calls the action in this event loop; a Celery runner (``puraify worker``) sends
the same ``StepInvocation`` to a worker and awaits its answer, without touching the executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pydantic
import structlog

from ..actions.base import (
    ActionContext,
    CommandGuard,
    CredentialLookup,
    HostCheck,
    WorkspaceJail,
)
from ..actions.registry import ActionRegistry
from ..errors import ActionError
from .sandbox import ActionPool, Job, action_ref

if TYPE_CHECKING:
    from .credentials import Credentials

__all__ = ["InProcessRunner", "StepInvocation", "StepRunner"]


@dataclass(frozen=True)
class StepInvocation:
    """One attempt of one step, with parameters already rendered.

    ``params``: the parsed parameter model when validation already made it (a step with no
    templated parameter); the in-process runner then does not validate ``parameters`` again.
    A runner in another process validates ``parameters``. ``user_id``: the user the run is
    for (a user's credential wins over the project's); ``required_scopes``: what Engine
    Control requires of the action's credential.
    """

    run_id: str
    step_id: str
    step_type: str
    attempt: int
    parameters: Mapping[str, Any]
    credentials: Mapping[str, Any] = field(default_factory=dict)
    params: object | None = None
    user_id: str | None = None
    required_scopes: tuple[str, ...] = ()


class StepRunner(Protocol):
    """Runs one attempt; returns the output or raises ``ActionError``."""

    async def run(self, invocation: StepInvocation) -> dict[str, Any]: ...


class InProcessRunner:
    """Runs actions in the current event loop with the shared client, jail and policies; a
    ``sandboxed`` action in the ``pool``'s worker processes, when there is one."""

    def __init__(
        self,
        registry: ActionRegistry,
        *,
        http: httpx.AsyncClient,
        workspace: WorkspaceJail,
        commands: CommandGuard,
        limits: Mapping[str, int] | None = None,
        pool: ActionPool | None = None,
        protected: tuple[str, ...] = (),
        credentials: Credentials | None = None,
        base_urls: Mapping[str, str] | None = None,
        hosts: HostCheck | None = None,
        databases: Path | None = None,
    ) -> None:
        self.registry = registry
        self.http = http
        self.workspace = workspace
        self.commands = commands
        self.limits = dict(limits or {})
        self.pool = pool
        self.protected = protected  # the engine's own files, refused by the worker's jail too
        self.credentials = credentials  # the vault, for ``ActionContext.credential``
        self.base_urls = dict(base_urls or {})
        self.hosts = hosts
        self.databases = databases  # the project's SQLite databases
        self.logger = structlog.get_logger("puraify.action")

    async def run(self, invocation: StepInvocation) -> dict[str, Any]:
        action = self.registry.get(invocation.step_type)
        params = invocation.params
        if params is None:
            try:
                params = action.parse(invocation.parameters)
            except pydantic.ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "parameters"
                raise ActionError(
                    f"parameter {where}: {first['msg']}", code="invalid_parameters", field=where
                ) from None
        if self.pool is not None and action.sandboxed:
            job = Job(
                action=action_ref(action),
                params=params,
                run_id=invocation.run_id,
                step_id=invocation.step_id,
                attempt=invocation.attempt,
                workspace=str(self.workspace.root),
                protected=self.protected,
                refuse_hard_links=self.workspace.refuse_hard_links,
                limits=self.limits,
            )
            return await self.pool.run(job)
        ctx = ActionContext(
            run_id=invocation.run_id,
            step_id=invocation.step_id,
            attempt=invocation.attempt,
            http=self.http,
            workspace=self.workspace,
            commands=self.commands,
            limits=self.limits,
            logger=self.logger.bind(
                run_id=invocation.run_id,
                step_id=invocation.step_id,
                action=action.name,
                attempt=invocation.attempt,
            ),
            credentials=invocation.credentials,
            vault=self._lookup(invocation.run_id, invocation.user_id),
            base_urls=self.base_urls,
            hosts=self.hosts,
            databases=self.databases,
        )
        return await action.run(params, ctx)

    def _lookup(self, run_id: str, user_id: str | None) -> CredentialLookup | None:
        credentials = self.credentials
        if credentials is None:
            return None

        async def lookup(platform: str) -> Mapping[str, Any]:
            return (await credentials.require(platform, user_id, run_id=run_id)).for_context()

        return lookup
