"""Credentials at call time: what a step of a platform gets from the vault, and only then.

``CredentialSource`` is what the engine asks (the vault implements it, in this process or over
HTTP). ``Credentials`` binds a source to a run's project and checks what comes back:

- no credential, where the action needs one: ``credential_missing``;
- a credential marked invalid (its refresh was refused): ``credential_invalid``;
- recorded scopes that do not cover the action's required scopes: ``insufficient_scope``. A
  credential stored without scopes is not checked (its scopes are unknown; the platform answers).

Every value handed out is registered with its project's redactor first, so it is replaced
wherever the project's runs' outputs, errors, events or log lines would show it. ``CredentialRunner`` wraps a step
runner: an action that declares ``credential`` gets its platform's credential in its context.
Missions read them as ``{{ secrets.<platform> }}`` (``Credentials.for_templates``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..actions.base import MISSING_OR_SCOPE
from ..actions.registry import ActionRegistry
from ..codes import ErrorCode
from ..errors import ActionError
from ..redaction import RUNS
from .runner import StepInvocation, StepRunner

__all__ = [
    "DEFAULT_PROJECT",
    "MISSING_OR_SCOPE",
    "MISSING_OR_SCOPE_CODES",
    "CredentialRunner",
    "CredentialSource",
    "Credentials",
    "StepCredential",
]

#: The codes that answer it.
MISSING_OR_SCOPE_CODES = frozenset({ErrorCode.CREDENTIAL_MISSING, ErrorCode.INSUFFICIENT_SCOPE})

#: The project of runs that name none (the command line without ``--project``).
DEFAULT_PROJECT = "default"

#: The field a template's ``{{ secrets.<platform> }}`` reads, per type with one secret; the
#: other types (basic, smtp, ssh_key) read as a mapping of their fields.
_PRIMARY = {
    "token": "token",
    "api_key": "api_key",
    "oauth2": "access_token",
    "database_url": "url",
    "webhook_secret": "secret",
}


@dataclass(frozen=True)
class StepCredential:
    """A credential as a step gets it."""

    platform: str
    type: str
    scopes: tuple[str, ...] = ()
    status: str = "valid"
    value: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def secret(self) -> Any:
        """Its one secret (a token's text), or the mapping of its fields."""
        name = _PRIMARY.get(self.type)
        return self.value.get(name) if name else dict(self.value)

    def for_context(self) -> dict[str, Any]:
        return {"type": self.type, "scopes": list(self.scopes), **self.value}


class CredentialSource(Protocol):
    async def fetch(
        self, project_id: str, platform: str, user_id: str | None
    ) -> StepCredential | None:
        """The credential a step of ``user_id`` (else the project) uses now, refreshed if
        it was about to expire; ``None`` if there is none. Raises ``ActionError`` with
        ``credential_invalid`` for one that cannot be used, a retryable one when the vault
        cannot be asked."""


class Credentials:
    """A run's way to the vault: ``source`` for ``project_id``."""

    def __init__(self, source: CredentialSource, project_id: str | None) -> None:
        self.source = source
        self.project_id = project_id or DEFAULT_PROJECT

    async def get(
        self,
        platform: str,
        user_id: str | None,
        *,
        run_id: str,
        required_scopes: Iterable[str] = (),
    ) -> StepCredential | None:
        """The credential ``run_id``'s step uses (checked, see the module)."""
        found = await self.source.fetch(self.project_id, platform, user_id)
        if found is None:
            return None
        RUNS.bind(run_id, self.project_id).add_credential(dict(found.value))
        if found.status != "valid":
            raise ActionError(
                f"the {platform} credential of project {self.project_id!r} is {found.status}; "
                "connect the platform again",
                code=ErrorCode.CREDENTIAL_INVALID,
            )
        missing = sorted(set(required_scopes) - set(found.scopes)) if found.scopes else []
        if missing:
            raise ActionError(
                f"{MISSING_OR_SCOPE}: the {platform} credential lacks {', '.join(missing)}",
                code=ErrorCode.INSUFFICIENT_SCOPE,
                details={"missing_scopes": missing},
            )
        return found

    async def require(
        self,
        platform: str,
        user_id: str | None,
        *,
        run_id: str,
        required_scopes: Iterable[str] = (),
    ) -> StepCredential:
        found = await self.get(platform, user_id, run_id=run_id, required_scopes=required_scopes)
        if found is None:
            whose = f"user {user_id!r} or " if user_id else ""
            raise ActionError(
                f"{MISSING_OR_SCOPE}: no {platform} credential for "
                f"{whose}project {self.project_id!r}",
                code=ErrorCode.CREDENTIAL_MISSING,
            )
        return found

    async def for_templates(
        self, platforms: Iterable[str], user_id: str | None, *, run_id: str
    ) -> dict[str, Any]:
        """``secrets`` as templates read it: each platform's secret (``credential_missing`` if
        one has none)."""
        return {
            p: (await self.require(p, user_id, run_id=run_id)).secret
            for p in sorted(set(platforms))
        }


class CredentialRunner:
    """A ``StepRunner`` that gives each action declaring ``credential`` its platform's
    credential (``ActionContext.credentials[platform]``) for the attempt."""

    def __init__(
        self, inner: StepRunner, credentials: Credentials, registry: ActionRegistry
    ) -> None:
        self.inner = inner
        self.credentials = credentials
        self.registry = registry

    async def run(self, invocation: StepInvocation) -> dict[str, Any]:
        action = self.registry.get(invocation.step_type)
        if action.credential is None:
            return await self.inner.run(invocation)
        scopes = invocation.required_scopes or action.required_scopes
        if action.credential == "required":
            found: StepCredential | None = await self.credentials.require(
                action.platform,
                invocation.user_id,
                run_id=invocation.run_id,
                required_scopes=scopes,
            )
        else:
            found = await self.credentials.get(
                action.platform,
                invocation.user_id,
                run_id=invocation.run_id,
                required_scopes=scopes,
            )
        if found is None:
            return await self.inner.run(invocation)
        given = {**invocation.credentials, action.platform: found.for_context()}
        return await self.inner.run(replace(invocation, credentials=given))
