"""The sans-I/O planner, including property tests over random DAGs."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from puraify.mission.model import StepStatus
from puraify.mission.plan import Plan, PlanStep, cycle_path

S, F, SK, C = StepStatus.SUCCESS, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED


def plan(*steps: PlanStep, fail_fast: bool = True) -> Plan:
    return Plan(steps, fail_fast=fail_fast)


def test_diamond_ready_order_and_levels() -> None:
    p = plan(PlanStep("a"), PlanStep("b", ("a",)), PlanStep("c", ("a",)), PlanStep("d", ("b", "c")))
    assert p.levels() == [["a"], ["b", "c"], ["d"]]
    assert p.ready() == ["a"]
    assert p.ready() == []
    p.complete("a", S)
    assert p.ready() == ["b", "c"]
    p.complete("c", S)
    assert p.ready() == []
    p.complete("b", S)
    assert p.ready() == ["d"]
    p.complete("d", S)
    assert p.done


def test_limit_and_declaration_order_of_ties() -> None:
    p = plan(*(PlanStep(f"s{i}") for i in range(5)))
    assert p.ready(2) == ["s0", "s1"]
    assert p.ready(2) == ["s2", "s3"]


def test_transitive_skip_and_independent_branch() -> None:
    p = plan(
        PlanStep("a"), PlanStep("b", ("a",)), PlanStep("c", ("b",)), PlanStep("x"), fail_fast=False
    )
    p.ready()
    assert p.complete("a", F) == [("b", SK), ("c", SK)]
    p.complete("x", S)
    assert p.done


def test_continue_on_error_does_not_block() -> None:
    p = plan(PlanStep("a", continue_on_error=True), PlanStep("b", ("a",)))
    p.ready()
    assert p.complete("a", F) == []
    assert p.ready() == ["b"]


def test_fail_fast_cancels_pending_but_keeps_cleanup() -> None:
    p = plan(
        PlanStep("a"),
        PlanStep("b"),
        PlanStep("after_b", ("b",)),
        PlanStep("cleanup", ("a", "b"), trigger_rule="all_done"),
        PlanStep("report", ("cleanup",)),
    )
    assert p.ready() == ["a", "b"]
    decided = p.complete("a", F)
    assert decided == [("after_b", C), ("report", C)]
    assert p.stopping
    # b was running: the executor cancels it, which frees the cleanup step
    assert p.complete("b", C) == []
    assert p.ready() == ["cleanup"]
    p.complete("cleanup", S)
    assert p.done


def test_one_failed_runs_only_on_failure() -> None:
    p = plan(
        PlanStep("a"), PlanStep("fallback", ("a",), trigger_rule="one_failed"), fail_fast=False
    )
    p.ready()
    p.complete("a", S)
    assert p.status[1] is SK
    p = plan(PlanStep("a"), PlanStep("fallback", ("a",), trigger_rule="one_failed"))
    p.ready()
    p.complete("a", F)
    assert p.ready() == ["fallback"]


def test_cancel_cancels_everything_pending() -> None:
    p = plan(PlanStep("a"), PlanStep("b", ("a",)), PlanStep("z", ("a",), trigger_rule="all_done"))
    p.ready()
    assert sorted(p.cancel()) == [("b", C), ("z", C)]


def test_critical_path_uses_durations() -> None:
    p = plan(PlanStep("a"), PlanStep("b", ("a",)), PlanStep("c", ("a",)), PlanStep("d", ("b", "c")))
    assert p.critical_path({"a": 1, "b": 1, "c": 5, "d": 1}) == ["a", "c", "d"]


@st.composite
def dags(draw: st.DrawFn) -> list[PlanStep]:
    n = draw(st.integers(1, 40))
    steps = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=4, unique=True)) if i else []
        steps.append(PlanStep(f"s{i}", tuple(f"s{d}" for d in deps)))
    order = draw(st.permutations(range(n)))
    return [steps[i] for i in order]


@settings(max_examples=150, deadline=None)
@given(dags(), st.integers(1, 8), st.randoms(use_true_random=False))
def test_random_dags_run_in_topological_order_exactly_once(
    steps: list[PlanStep], limit: int, rnd: random.Random
) -> None:
    p = Plan(steps)
    started: list[str] = []
    finished: set[str] = set()
    running: list[str] = []
    while not p.done:
        for sid in p.ready(limit - len(running)):
            step = steps[p.index[sid]]
            assert all(d in finished for d in step.depends_on), (
                "started before a dependency finished"
            )
            started.append(sid)
            running.append(sid)
        assert running, "planner stalled"
        sid = running.pop(rnd.randrange(len(running)))
        p.complete(sid, S)
        finished.add(sid)
    assert sorted(started) == sorted(s.id for s in steps)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_cycles_are_always_found(steps: list[PlanStep], data: st.DataObject) -> None:
    edges = {s.id: list(s.depends_on) for s in steps}
    assert cycle_path(edges) is None
    # close a cycle: an ancestor depends on a descendant
    chains = [(s.id, d) for s in steps for d in s.depends_on]
    if not chains:
        edges[steps[0].id].append(steps[0].id)
    else:
        child, parent = data.draw(st.sampled_from(chains))
        edges[parent].append(child)
    path = cycle_path(edges)
    assert path is not None and path[0] == path[-1]
    for a, b in zip(path, path[1:], strict=False):
        assert b in edges[a]
