"""The policy gate: every attempt of every step is authorized before it is dispatched.

``StepPolicy`` is what the engine asks (Engine Control implements it, in this process or over
HTTP); ``PolicedRunner`` asks it before handing the attempt to the runner it wraps. A step the
policy refuses fails with its code (``policy_denied``, ``platform_unavailable``, or the
retryable ``policy_unavailable`` when the policy cannot be asked: the gate fails closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from ..actions.base import Action
from ..actions.registry import ActionRegistry
from .runner import StepInvocation, StepRunner

__all__ = ["PolicedRunner", "StepPolicy"]


class StepPolicy(Protocol):
    async def authorize(self, action: Action, *, run_id: str, step_id: str) -> Sequence[str]:
        """Return the scopes ``action``'s credential must grant if it may run now for this
        step; raise ``ActionError`` if not."""


class PolicedRunner:
    """A ``StepRunner`` that asks ``policy`` before each attempt."""

    def __init__(self, inner: StepRunner, policy: StepPolicy, registry: ActionRegistry) -> None:
        self.inner = inner
        self.policy = policy
        self.registry = registry

    async def run(self, invocation: StepInvocation) -> dict[str, Any]:
        action = self.registry.get(invocation.step_type)
        scopes = await self.policy.authorize(
            action, run_id=invocation.run_id, step_id=invocation.step_id
        )
        if scopes:
            invocation = replace(invocation, required_scopes=tuple(scopes))
        return await self.inner.run(invocation)
