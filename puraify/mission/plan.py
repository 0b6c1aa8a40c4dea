"""The sans-I/O planner: which steps may start now, and what a finished step implies.

The executor drives it: ``ready(n)`` hands out up to ``n`` steps that may start (ties in
declaration order, each step handed out once), ``complete(step_id, status)`` feeds a result back
and returns the steps that result decided without running (skipped or cancelled). Nothing here
awaits, sleeps or reads a clock, so the same plan is driven by the in-process executor, by tests
and, later, by workers.

Rules (DESIGN.md §3):
- ``all_success`` (default) runs when every dependency succeeded or failed with
  ``continue_on_error``; any other terminal dependency skips it (transitively, at once).
- ``all_done`` runs once every dependency is terminal; ``one_failed`` runs once every dependency
  is terminal and at least one failed, and is skipped otherwise.
- A failure without ``continue_on_error`` under ``fail_fast`` stops the plan: pending steps are
  cancelled, except ``all_done`` / ``one_failed`` steps (cleanup and fallback), which still run
  when their dependencies are done. ``cancel()`` (user or deadline) cancels every pending step.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .model import Mission, StepStatus, TriggerRule

__all__ = ["Plan", "PlanStep", "cycle_path", "topological_levels", "topological_order"]

_OK = StepStatus.SUCCESS


@dataclass(frozen=True, slots=True)
class PlanStep:
    """What the planner needs to know about a step."""

    id: str
    depends_on: tuple[str, ...] = ()
    trigger_rule: TriggerRule = "all_success"
    continue_on_error: bool = False


class Plan:
    """Mutable run-time state of one mission's DAG. Build with ``Plan.from_mission``."""

    def __init__(self, steps: Sequence[PlanStep], *, fail_fast: bool = True) -> None:
        self.steps = tuple(steps)
        self.fail_fast = fail_fast
        self.index = {s.id: i for i, s in enumerate(self.steps)}
        n = len(self.steps)
        self.status: list[StepStatus] = [StepStatus.PENDING] * n
        index = self.index
        self._deps: list[tuple[int, ...]] = [
            tuple([index[d] for d in s.depends_on]) for s in self.steps
        ]
        self._dependents: list[list[int]] = [[] for _ in range(n)]
        for i, deps in enumerate(self._deps):
            for d in deps:
                self._dependents[d].append(i)
        self._waiting = [len(d) for d in self._deps]
        self._ready: list[int] = [i for i in range(n) if self._waiting[i] == 0]
        heapq.heapify(self._ready)
        self._terminal = 0
        self.running: set[str] = set()
        self.stopping = False

    @classmethod
    def from_mission(cls, mission: Mission) -> Plan:
        """A plan for a validated mission (ids unique, dependencies present, no cycle)."""
        return cls(
            [
                PlanStep(
                    s.id, tuple(dict.fromkeys(s.depends_on)), s.trigger_rule, s.continue_on_error
                )
                for s in mission.steps
            ],
            fail_fast=mission.config.fail_fast,
        )

    # -- driving -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every step has a terminal status."""
        return self._terminal == len(self.steps)

    def has_ready(self) -> bool:
        """Whether ``ready()`` would hand out a step now (ignoring any limit)."""
        while self._ready and self.status[self._ready[0]] is not StepStatus.PENDING:
            heapq.heappop(self._ready)
        return bool(self._ready)

    def ready(self, limit: int | None = None) -> list[str]:
        """Hand out up to ``limit`` steps that may start now, marking them running."""
        out: list[str] = []
        while self._ready and (limit is None or len(out) < limit):
            i = heapq.heappop(self._ready)
            if self.status[i] is not StepStatus.PENDING:
                continue
            self.status[i] = StepStatus.RUNNING
            step_id = self.steps[i].id
            self.running.add(step_id)
            out.append(step_id)
        return out

    def complete(self, step_id: str, status: StepStatus) -> list[tuple[str, StepStatus]]:
        """Record a started (or ``when``-skipped) step's terminal status.

        Returns the steps this decided without running them, in the order decided.
        """
        if not status.terminal:
            raise ValueError(f"complete() needs a terminal status, got {status}")
        i = self.index[step_id]
        if self.status[i].terminal:
            raise ValueError(f"step {step_id!r} already finished as {self.status[i]}")
        self.running.discard(step_id)
        decided: list[tuple[str, StepStatus]] = []
        self._finish(i, status, decided)
        step = self.steps[i]
        if status is StepStatus.FAILED and not step.continue_on_error and self.fail_fast:
            decided.extend(self._stop(keep_handlers=True))
        return decided

    def restore(self, statuses: dict[str, StepStatus]) -> None:
        """Put back terminal statuses recorded by an earlier execution (resume, retry).

        Steps not listed stay pending and run when their dependencies allow; nothing is decided
        here (the recorded statuses already include earlier decisions).
        """
        for i in topological_order(self._deps, self._dependents):
            status = statuses.get(self.steps[i].id)
            if status is None or not status.terminal or self.status[i].terminal:
                continue
            self.status[i] = status
            self._terminal += 1
            for k in self._dependents[i]:
                self._waiting[k] -= 1
                if self._waiting[k] == 0 and self.status[k] is StepStatus.PENDING:
                    heapq.heappush(self._ready, k)
        for i in range(len(self.steps)):
            if self.status[i] is StepStatus.PENDING and self._waiting[i] == 0:
                heapq.heappush(self._ready, i)

    def cancel(self) -> list[tuple[str, StepStatus]]:
        """Cancel every pending step (user cancellation or deadline). Running ones are the
        caller's to stop and report with ``complete(id, CANCELLED)``."""
        return self._stop(keep_handlers=False)

    # -- internals ---------------------------------------------------------------------------

    def _stop(self, *, keep_handlers: bool) -> list[tuple[str, StepStatus]]:
        self.stopping = True
        decided: list[tuple[str, StepStatus]] = []
        for i, step in enumerate(self.steps):
            if self.status[i] is not StepStatus.PENDING:
                continue
            if keep_handlers and step.trigger_rule != "all_success":
                continue
            self._finish(i, StepStatus.CANCELLED, decided, record=True)
        if not keep_handlers:
            self._ready.clear()
        return decided

    def _finish(
        self,
        i: int,
        status: StepStatus,
        decided: list[tuple[str, StepStatus]],
        *,
        record: bool = False,
    ) -> None:
        # Iterative: a long chain of skips must not recurse once per step.
        work = [(i, status, record)]
        while work:
            j, st, rec = work.pop()
            if self.status[j].terminal:
                continue
            self.status[j] = st
            self._terminal += 1
            if rec:
                decided.append((self.steps[j].id, st))
            for k in self._dependents[j]:
                if self.status[k] is not StepStatus.PENDING:
                    continue
                self._waiting[k] -= 1
                verdict = self._verdict(k, eager_dep=j)
                if verdict is None:
                    continue
                if verdict is StepStatus.RUNNING:
                    heapq.heappush(self._ready, k)
                else:
                    work.append((k, verdict, True))

    def _ok(self, j: int) -> bool:
        st = self.status[j]
        return st is _OK or (st is StepStatus.FAILED and self.steps[j].continue_on_error)

    def _verdict(self, k: int, eager_dep: int) -> StepStatus | None:
        """RUNNING = may start; a terminal status = decided without running; None = wait."""
        step = self.steps[k]
        if step.trigger_rule == "all_success":
            if not self._ok(eager_dep):
                if self.status[eager_dep] is StepStatus.CANCELLED:
                    return StepStatus.CANCELLED
                return StepStatus.SKIPPED
            if self._waiting[k]:
                return None
            if self.stopping:
                return StepStatus.CANCELLED
            return StepStatus.RUNNING
        if self._waiting[k]:
            return None
        if step.trigger_rule == "all_done":
            return StepStatus.RUNNING
        failed = any(self.status[d] is StepStatus.FAILED for d in self._deps[k])
        return StepStatus.RUNNING if failed else StepStatus.SKIPPED

    # -- analysis ----------------------------------------------------------------------------

    def levels(self) -> list[list[str]]:
        """Steps grouped by depth: every step's dependencies sit in earlier levels."""
        return _levels(self.steps, self._deps, self._dependents)

    def critical_path(self, durations: dict[str, float] | None = None) -> list[str]:
        """The longest chain by total duration (each step counts 1 when no durations given)."""
        weights = durations or {}
        best = [0.0] * len(self.steps)
        prev = [-1] * len(self.steps)
        for i in topological_order(self._deps, self._dependents):
            for d in self._deps[i]:
                if prev[i] == -1 or best[d] > best[prev[i]]:
                    prev[i] = d
            base = best[prev[i]] if prev[i] != -1 else 0.0
            best[i] = base + weights.get(self.steps[i].id, 1.0)
        if not best:
            return []
        end = max(range(len(best)), key=lambda i: (best[i], -i))
        path = []
        while end != -1:
            path.append(self.steps[end].id)
            end = prev[end]
        return list(reversed(path))


def topological_order(
    deps: Sequence[Sequence[int]], dependents: Sequence[Sequence[int]] | None = None
) -> list[int]:
    """Indices in an order where each comes after its dependencies (``deps[i]``: the indices
    ``i`` depends on); indices on or after a cycle are left out."""
    n = len(deps)
    waiting = [len(d) for d in deps]
    if dependents is None:
        built: list[list[int]] = [[] for _ in range(n)]
        for i, ds in enumerate(deps):
            for d in ds:
                built[d].append(i)
        dependents = built
    order = [i for i in range(n) if waiting[i] == 0]
    for i in order:  # grows while iterating: Kahn's algorithm
        for k in dependents[i]:
            waiting[k] -= 1
            if waiting[k] == 0:
                order.append(k)
    return order


def topological_levels(steps: Sequence[PlanStep]) -> list[list[str]]:
    """Group steps into levels by longest distance from a root (declaration order inside)."""
    index = {s.id: i for i, s in enumerate(steps)}
    return _levels(steps, [[index[d] for d in s.depends_on] for s in steps], None)


def _levels(
    steps: Sequence[PlanStep],
    deps: Sequence[Sequence[int]],
    dependents: Sequence[Sequence[int]] | None,
) -> list[list[str]]:
    level = [0] * len(steps)
    for i in topological_order(deps, dependents):
        ds = deps[i]
        if ds:
            level[i] = max([level[d] for d in ds]) + 1
    out: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
    for i, s in enumerate(steps):
        out[level[i]].append(s.id)
    return out


def cycle_path(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One dependency cycle as a path ``[a, b, ..., a]``, or None if the graph is acyclic."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(edges, white)
    for start in edges:
        if color[start] != white:
            continue
        stack: list[tuple[str, list[str]]] = [(start, list(edges[start]))]
        path = [start]
        color[start] = grey
        while stack:
            node, todo = stack[-1]
            if not todo:
                color[node] = black
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if nxt not in color:
                continue
            if color[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append((nxt, list(edges[nxt])))
        # fallthrough: component acyclic
    return None
