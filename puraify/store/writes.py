"""The run store's writes: cached statements, and builders that turn runs, attempts and results
into ``Write`` s. Pure: nothing here touches the database.

Statements are built once, with bound parameters, and ranked parents first, so that a group
commit (``store.commit``) sends the same statement of every writer in a batch as one
``executemany``. Builders redact what a user or a platform can put in a row (outputs, error
messages, context) and cap outputs at ``max_output_bytes``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, update

from ..codes import ErrorCode
from ..mission.data import json_safe, safe_text
from ..mission.model import Mission, MissionResult, MissionStatus, StepError, StepResult, StepStatus
from .commit import Statement, Write
from .tables import JSONText, attempts, run_events, run_steps, runs

__all__ = [
    "CLOSE_ATTEMPTS",
    "DECIDE_STEP",
    "FENCE_SPAN",
    "FINISH_ATTEMPT",
    "FINISH_RUN",
    "FINISH_STEP",
    "INSERT_ATTEMPT",
    "INSERT_EVENT",
    "INSERT_RUN",
    "INSERT_STEPS",
    "START_STEP",
    "TRUNCATED",
    "NewRun",
    "Rows",
]

#: A fence is ``epoch * FENCE_SPAN + attempt``: later attempts and later owners (a takeover
#: raises the run's lease epoch) always hold higher fences than anything before them.
FENCE_SPAN = 1_000_000

#: Key of the marker that replaces an output larger than the cap.
TRUNCATED = "__puraify_truncated__"

INSERT_RUN = Statement(insert(runs), 0)
INSERT_STEPS = Statement(insert(run_steps), 1)
START_STEP = Statement(
    update(run_steps)
    .where(
        run_steps.c.run_id == bindparam("p_run"),
        run_steps.c.step_id == bindparam("p_step"),
        run_steps.c.fence < bindparam("p_fence"),
    )
    .values(
        fence=bindparam("p_fence"),
        status=StepStatus.RUNNING.value,
        attempts=bindparam("p_attempt"),
        started_at=func.coalesce(run_steps.c.started_at, bindparam("p_now")),
    ),
    2,
)
INSERT_ATTEMPT = Statement(insert(attempts), 3)
_FINISH_FIELDS = {
    "status": bindparam("p_status"),
    "attempts": bindparam("p_attempts"),
    "finished_at": bindparam("p_finished"),
    "duration_ms": bindparam("p_duration"),
    "output": bindparam("p_output", type_=run_steps.c.output.type),
    "error_code": bindparam("p_code"),
    "error_message": bindparam("p_message"),
    "error_retryable": bindparam("p_retryable"),
    "error_status": bindparam("p_http_status"),
}
FINISH_STEP = Statement(  # a result of a dispatched attempt: only if its fence is the latest
    update(run_steps)
    .where(
        run_steps.c.run_id == bindparam("p_run"),
        run_steps.c.step_id == bindparam("p_step"),
        run_steps.c.fence == bindparam("p_fence"),
    )
    .values(**_FINISH_FIELDS),
    4,
)
DECIDE_STEP = Statement(  # decided without running (skipped, cancelled, unknown_outcome)
    update(run_steps)
    .where(run_steps.c.run_id == bindparam("p_run"), run_steps.c.step_id == bindparam("p_step"))
    .values(**_FINISH_FIELDS),
    4,
)
FINISH_ATTEMPT = Statement(
    update(attempts)
    .where(
        attempts.c.run_id == bindparam("p_run"),
        attempts.c.step_id == bindparam("p_step"),
        attempts.c.fence == bindparam("p_fence"),
    )
    .values(
        status=bindparam("p_status"),
        finished_at=bindparam("p_finished"),
        duration_ms=bindparam("p_duration"),
        error_code=bindparam("p_code"),
        error_message=bindparam("p_message"),
    ),
    5,
)
CLOSE_ATTEMPTS = Statement(  # a step decided while an attempt was marked running (resume)
    update(attempts)
    .where(
        attempts.c.run_id == bindparam("p_run"),
        attempts.c.step_id == bindparam("p_step"),
        attempts.c.status == StepStatus.RUNNING.value,
    )
    .values(
        status=bindparam("p_status"),
        finished_at=bindparam("p_finished"),
        error_code=bindparam("p_code"),
        error_message=bindparam("p_message"),
    ),
    5,
)
FINISH_RUN = Statement(
    update(runs)
    .where(runs.c.id == bindparam("p_run"))
    .values(
        status=bindparam("p_status"),
        finished_at=bindparam("p_finished"),
        duration_ms=bindparam("p_duration"),
        error_code=bindparam("p_code"),
        error_message=bindparam("p_message"),
        warnings=bindparam("p_warnings", type_=runs.c.warnings.type),
        lease_owner=None,
        lease_until=None,
    ),
    6,
)
INSERT_EVENT = Statement(insert(run_events), 7)


@dataclass(frozen=True)
class NewRun:
    """A new run's rows: the run, its steps and its ``run_created`` event."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    event: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    def writes(self) -> list[Write]:
        """The run's creation on its own."""
        return [
            Write(INSERT_RUN, self.run),
            *(Write(INSERT_STEPS, row) for row in self.steps),
            Write(INSERT_EVENT, self.event),
        ]

    def before(self, writes: Sequence[Write]) -> list[Write]:
        """The run's creation followed by ``writes``, for one transaction.

        A step that ``writes`` start (``START_STEP``) is inserted running instead of being
        inserted and then updated: the same rows, one statement less per step.
        """
        steps = {row["step_id"]: row for row in self.steps}
        rest: list[Write] = []
        for write in writes:
            params = write.params
            row = steps.get(params["p_step"]) if write.statement is START_STEP else None
            if row is None:
                rest.append(write)
                continue
            if row["fence"] < params["p_fence"]:  # START_STEP's own condition and values
                steps[row["step_id"]] = {
                    **row,
                    "status": StepStatus.RUNNING.value,
                    "fence": params["p_fence"],
                    "attempts": params["p_attempt"],
                    "started_at": row["started_at"] or params["p_now"],
                }
        created = NewRun(self.run, list(steps.values()), self.event)
        return [*created.writes(), *rest]


@dataclass(frozen=True)
class Rows:
    """Builds the writes that record runs; redacts and caps what users and platforms put in."""

    max_output_bytes: int
    redact: Callable[[Any], Any]

    def output(self, output: dict[str, Any] | None) -> JSONText | dict[str, Any] | None:
        """A step's output, redacted; a marker with a preview when it is over the cap.

        The text measured is the text stored: the output is serialized once.
        """
        if output is None:
            return None
        redacted = self.redact(output)
        try:
            text = json.dumps(redacted, default=str, allow_nan=False)
        except ValueError:  # NaN from somewhere no action put it: stored by the documented rule
            text = json.dumps(json_safe(redacted), default=str)
        if len(text) <= self.max_output_bytes:
            return JSONText(text)
        return {TRUNCATED: True, "size": len(text), "preview": text[: self.max_output_bytes]}

    def message(self, message: str | None) -> str | None:
        """An error message or warning, redacted and cut to 4,000 characters."""
        return None if message is None else safe_text(str(self.redact(message))[:4000])

    def new_run(
        self,
        mission: Mission,
        *,
        run_id: str,
        now: datetime,
        owner: str,
        lease_seconds: float,
        context: dict[str, Any] | None,
        idempotency_key: str | None,
        parent_run_id: str | None,
        workspace: str | None,
        reuse: Mapping[str, StepResult],
        project_id: str | None,
        profile: str,
    ) -> NewRun:
        """The rows of a new run owned by ``owner``; steps in ``reuse`` keep those results.

        The mission document is serialized once: ``mission_hash`` is the SHA-256 of the very
        text stored as ``mission_doc``.
        """
        doc = json.dumps(mission.model_dump(mode="json"))
        step_rows = []
        for position, step in enumerate(mission.steps):
            old = reuse.get(step.id)
            step_rows.append(
                {
                    "run_id": run_id,
                    "step_id": step.id,
                    "position": position,
                    "step_type": step.step_type,
                    "status": (old.status if old else StepStatus.PENDING).value,
                    "attempts": old.attempts if old else 0,
                    "fence": 0,
                    "started_at": old.started_at if old else None,
                    "finished_at": old.finished_at if old else None,
                    "duration_ms": old.duration_ms if old else None,
                    "output": self.output(old.output) if old else None,
                    "error_code": None,
                    "error_message": None,
                    "reused_from": parent_run_id if old else None,
                }
            )
        run_row = {
            "id": run_id,
            "mission_name": mission.display_name,
            "mission_hash": hashlib.sha256(doc.encode()).hexdigest(),
            "mission_doc": JSONText(doc),
            "context": self.redact(context or {}),
            "status": MissionStatus.RUNNING.value,
            "idempotency_key": idempotency_key,
            "parent_run_id": parent_run_id,
            "workspace": workspace,
            "created_at": now,
            "started_at": now,
            "finished_at": None,
            "duration_ms": None,
            "error_code": None,
            "error_message": None,
            "warnings": [],
            "lease_owner": owner,
            "lease_until": now + timedelta(seconds=lease_seconds),
            "cancel_requested": False,
            "project_id": project_id,
            "lease_epoch": 1,
            "profile": profile,
        }
        event_row = {
            "run_id": run_id,
            "at": now,
            "kind": "run_created",
            "step_id": None,
            "data": {"mission": mission.display_name, "parent_run_id": parent_run_id},
        }
        return NewRun(run_row, step_rows, event_row)

    def attempt(self, run_id: str, step_id: str, attempt: int, fence: int, now: datetime) -> Write:
        """The row of an attempt about to be dispatched."""
        return Write(
            INSERT_ATTEMPT,
            {
                "run_id": run_id,
                "step_id": step_id,
                "attempt": attempt,
                "fence": fence,
                "status": StepStatus.RUNNING.value,
                "started_at": now,
                "finished_at": None,
                "duration_ms": None,
                "error_code": None,
                "error_message": None,
            },
        )

    def start_step(
        self, run_id: str, step_id: str, attempt: int, fence: int, now: datetime
    ) -> Write:
        """A step running under a new fence (only if that fence is higher than its last)."""
        return Write(
            START_STEP,
            {
                "p_run": run_id,
                "p_step": step_id,
                "p_fence": fence,
                "p_attempt": attempt,
                "p_now": now,
            },
        )

    def interrupted(self, run_id: str, step_ids: Sequence[str], now: datetime) -> list[Write]:
        """Close the running attempts of steps whose engine stopped mid-attempt."""
        code = ErrorCode.INTERRUPTED
        message = "the engine running this attempt stopped; the step was dispatched again"
        return [
            Write(
                CLOSE_ATTEMPTS,
                {
                    "p_run": run_id,
                    "p_step": step_id,
                    "p_status": StepStatus.FAILED.value,
                    "p_finished": now,
                    "p_code": code.value,
                    "p_message": message,
                },
            )
            for step_id in step_ids
        ]

    def steps(
        self, run_id: str, items: Sequence[tuple[StepResult, int | None]], now: datetime
    ) -> list[Write]:
        """Terminal step results; a ``None`` fence means decided without running.

        A step decided without running may still have an attempt marked running: one whose
        engine stopped mid-call (an unsafe step ends ``unknown_outcome`` on resume). That
        attempt ends with the step's status and error.
        """
        writes: list[Write] = []
        for result, fence in items:
            error = result.error
            params = {
                "p_run": run_id,
                "p_step": result.step_id,
                "p_fence": fence,
                "p_status": result.status.value,
                "p_attempts": result.attempts,
                "p_finished": result.finished_at or now,
                "p_duration": result.duration_ms,
                "p_output": self.output(result.output),
                "p_code": error.code if error else None,
                "p_message": self.message(error.message if error else None),
                "p_retryable": error.retryable if error else None,
                "p_http_status": error.status if error else None,
            }
            if fence is None:
                writes.append(Write(DECIDE_STEP, params))
                writes.append(Write(CLOSE_ATTEMPTS, params))
                continue
            # I5: the WHERE on the fence drops a late result of an earlier attempt or lease.
            writes.append(Write(FINISH_STEP, params))
            writes.append(Write(FINISH_ATTEMPT, params))
        return writes

    def attempt_failed(
        self, run_id: str, step_id: str, fence: int, error: StepError, now: datetime
    ) -> Write:
        """An attempt that failed while its step goes on to retry."""
        return Write(
            FINISH_ATTEMPT,
            {
                "p_run": run_id,
                "p_step": step_id,
                "p_fence": fence,
                "p_status": StepStatus.FAILED.value,
                "p_finished": now,
                "p_duration": None,
                "p_code": error.code,
                "p_message": self.message(error.message),
            },
        )

    def run_end(
        self,
        result: MissionResult,
        steps: Sequence[tuple[StepResult, int | None]],
        now: datetime,
    ) -> list[Write]:
        """The run's end with its last step results, and the ``run_finished`` event."""
        run_id = result.run_id
        ended = {
            "p_run": run_id,
            "p_status": result.status.value,
            "p_finished": result.finished_at,
            "p_duration": result.duration_ms,
            "p_code": result.error.code if result.error else None,
            "p_message": self.message(result.error.message if result.error else None),
            "p_warnings": [self.message(w) for w in result.warnings],
        }
        event = {
            "run_id": run_id,
            "at": now,
            "kind": "run_finished",
            "step_id": None,
            "data": {"status": result.status.value},
        }
        return [
            *self.steps(run_id, steps, now),
            Write(FINISH_RUN, ended),
            Write(INSERT_EVENT, event),
        ]
