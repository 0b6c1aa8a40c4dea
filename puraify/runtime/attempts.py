"""One step's attempts: recorded, dispatched under the step's timeout, retried when allowed.

Each attempt is recorded with its fencing token before it is dispatched (the first one in the
scheduler's batch, later ones here), runs through the ``StepRunner`` bounded by the step's
timeout, and fails or retries: only retryable errors retry, up to the step's policy, after the
backoff delay (a platform's ``Retry-After`` honoured). A failed attempt that will be retried is
written to the attempt history and announced to ``on_retry`` hooks. Whatever an action raises,
the step ends with a status and, when it failed, an error with a code.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from ..errors import ActionError, PuraifyError, StepTimeout
from ..mission.compile import CompiledStep
from ..mission.data import json_safe, safe_text
from ..mission.model import MissionStep, StepError, StepResult, StepStatus
from ..redaction import redact
from .hooks import Hooks, RunInfo
from .recorder import RunRecorder
from .retry import backoff_delay, is_retryable
from .runner import StepInvocation, StepRunner

__all__ = ["Attempts", "StepRecord"]

_log = structlog.get_logger("puraify.executor")


@dataclass(slots=True)
class StepRecord:
    """A step's live state in one run: what its ``StepResult`` will say, and its latest fence."""

    compiled: CompiledStep
    status: StepStatus = StepStatus.PENDING
    output: dict[str, Any] | None = None
    error: StepError | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    t0: float | None = None  # monotonic start, for the duration
    duration_ms: float | None = None
    fence: int | None = None

    @property
    def step(self) -> MissionStep:
        return self.compiled.step

    @classmethod
    def restored(cls, compiled: CompiledStep, result: StepResult) -> StepRecord:
        """A step whose result an earlier execution recorded (resume, retry)."""
        return cls(
            compiled,
            result.status,
            result.output,
            result.error,
            result.attempts,
            result.started_at,
            result.finished_at,
            duration_ms=result.duration_ms,
        )

    def result(self) -> StepResult:
        # built from values this module typed itself (an action's output is checked to be a
        # mapping when it returns): no validation pass, once per reported step
        return StepResult.model_construct(
            step_id=self.step.id,
            name=self.step.display_name,
            step_type=self.step.step_type,
            status=self.status,
            output=self.output,
            error=self.error,
            attempts=self.attempts,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_ms=self.duration_ms,
        )


class Attempts:
    """Runs the attempts of steps; built once per executor."""

    def __init__(
        self, runner: StepRunner, recorder: RunRecorder, hooks: Hooks, rng: random.Random
    ) -> None:
        self.runner = runner
        self.recorder = recorder
        self.hooks = hooks
        self.rng = rng

    async def run(
        self,
        run: RunInfo,
        rec: StepRecord,
        step: CompiledStep,
        parameters: Mapping[str, Any] | Callable[[], Awaitable[Mapping[str, Any]]],
        params: object | None,
    ) -> None:
        """Attempt ``step`` until it succeeds, fails for good or runs out of retries; the
        outcome lands in ``rec``. ``params``: the parsed parameters, when already known.
        ``parameters``: the rendered parameters, or what renders them at each attempt (a step
        that reads the vault: a vault that could not be asked is retried as the step is)."""
        policy, timeout = step.retry, step.timeout
        attempt = rec.attempts
        registered = rec.fence is not None  # the first attempt was recorded with its batch
        while True:
            attempt += 1
            if not registered:
                fences = await self.recorder.attempts_started(run.run_id, [(step.id, attempt)])
                rec.fence = fences[step.id]
            registered = False
            rec.attempts = attempt
            await self.hooks.before_step(run, step.step, attempt)
            error: ActionError
            try:
                async with asyncio.timeout(timeout) as cm:
                    invocation = StepInvocation(
                        run.run_id,
                        step.id,
                        step.action,
                        attempt,
                        parameters if isinstance(parameters, Mapping) else await parameters(),
                        params=params,
                        user_id=run.user_id,
                    )
                    output = await self.runner.run(invocation)
                if not isinstance(output, dict):
                    raise TypeError(f"the action returned {type(output).__name__}, not an object")
                # what a platform answered, made storable and servable (NaN, NUL, ...), with
                # every secret it may echo back redacted before anyone sees it; a large answer
                # in a thread, so that other runs and requests go on meanwhile
                rec.status, rec.output = StepStatus.SUCCESS, await _cleaned(output, run.run_id)
                return
            except TimeoutError:
                if not cm.expired():
                    error = ActionError("the action timed out", code="timeout", retryable=True)
                else:
                    error = StepTimeout(f"step ran past its {timeout:g}s timeout and was stopped")
            except ActionError as exc:
                error = exc
            except PuraifyError as exc:
                error = ActionError(exc.message, code=exc.code)
            except OSError as exc:  # the workspace refused what a file step asked
                error = ActionError(
                    f"{step.action}: {exc.strerror or type(exc).__name__}", code="file_error"
                )
            except (ValueError, UnicodeError) as exc:  # a value the action could not use
                error = ActionError(f"{step.action}: {exc}"[:500], code="invalid_parameters")
            except Exception as exc:  # an action bug must not abort the mission
                _log.exception("action_crashed", run_id=run.run_id, step_id=step.id)
                error = ActionError(f"{type(exc).__name__}: {exc}", code="internal_error")
            if attempt <= policy.attempts and is_retryable(error, policy.retry_on):
                delay = backoff_delay(policy, attempt, retry_after=error.retry_after, rng=self.rng)
                if rec.fence is not None:
                    await self.recorder.attempt_failed(
                        run.run_id,
                        step.id,
                        rec.fence,
                        StepError(
                            code=error.code,
                            message=_message(error, run.run_id),
                            status=error.status,
                        ),
                    )
                await self.hooks.on_retry(
                    run, step.step, attempt, _error_dict(error, run.run_id), delay
                )
                await asyncio.sleep(delay)
                continue
            rec.status = StepStatus.FAILED
            rec.output = (
                None if error.output is None else redact(json_safe(error.output), run.run_id)
            )
            rec.error = StepError(
                code=error.code,
                message=_message(error, run.run_id),
                retryable=error.retryable,
                status=error.status,
            )
            return


def _message(error: ActionError, run_id: str) -> str:
    return str(redact(safe_text(error.message), run_id))


def _error_dict(error: ActionError, run_id: str) -> dict[str, Any]:
    return {"code": error.code, "message": _message(error, run_id), "status": error.status}


#: Outputs larger than this (characters of text, plus one for every item) are cleaned (made
#: safe and redacted) off the loop.
_LARGE_OUTPUT_CHARS = 256 * 1024


async def _cleaned(output: dict[str, Any], run_id: str) -> Any:
    """``output`` made storable and redacted: here, or in a thread when it is large."""
    if _text_size(output, _LARGE_OUTPUT_CHARS) < _LARGE_OUTPUT_CHARS:
        return redact(json_safe(output), run_id)
    return await asyncio.to_thread(lambda: redact(json_safe(output), run_id))


def _text_size(value: Any, enough: int) -> int:
    """How large ``value`` is to clean: its text, and one for every item (a million empty
    lists cost as much as a megabyte of text), counted up to ``enough`` (no further)."""
    seen, stack = 0, [value]
    while stack and seen < enough:
        item = stack.pop()
        seen += 1
        if isinstance(item, str | bytes):
            seen += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return seen
