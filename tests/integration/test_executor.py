"""Mission semantics (DESIGN.md §3) on the real executor, real processes and real servers."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import field_validator

from puraify.actions import Action, ActionContext, default_registry
from puraify.actions.base import Output, Params
from puraify.mission.model import MissionStatus, StepResult, StepStatus
from puraify.runtime.engine import Engine
from puraify.runtime.executor import RunHandle
from puraify.runtime.hooks import Hooks, RunInfo
from puraify.testing import RecordingSink, Reply
from tests.conftest import TEST_ENV, EngineFactory, make_settings, run_text
from tests.helpers import poll, process_running

SLEEP = sys.executable  # `python -c "import time; time.sleep(x)"` via argv, no shell


def sleeper(step_id: str, seconds: float, deps: list[str] | None = None, **extra: Any) -> str:
    lines = [
        f"  - id: {step_id}",
        "    step_type: command",
        f"    depends_on: {deps or []}",
        "    parameters:",
        f"      command: {SLEEP}",
        f"      args: ['-c', 'import time; time.sleep({seconds})']",
    ]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class Recorder(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []

    async def before_step(self, run: RunInfo, step: Any, attempt: int) -> None:
        self.events.append(("start", step.id, time.monotonic()))

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        self.events.append((result.status.value, result.step_id, time.monotonic()))

    def at(self, kind: str, step_id: str) -> float:
        return next(t for k, s, t in self.events if k == kind and s == step_id)


async def test_diamond_runs_branches_in_parallel(make_engine: EngineFactory) -> None:
    rec = Recorder()
    engine = make_engine(hooks=[rec])
    text = (
        "config: {max_concurrent_steps: 4}\nsteps:\n"
        + sleeper("a", 0.05)
        + sleeper("b", 0.6, ["a"])
        + sleeper("c", 0.6, ["a"])
        + sleeper("d", 0.05, ["b", "c"])
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.COMPLETED
    # b and c overlap: each starts before the other ends
    assert rec.at("start", "c") < rec.at("success", "b")
    assert rec.at("start", "b") < rec.at("success", "c")
    assert rec.at("start", "d") >= max(rec.at("success", "b"), rec.at("success", "c"))
    assert [s.step_id for s in result.steps] == ["a", "b", "c", "d"]


async def test_concurrency_limit_is_respected(make_engine: EngineFactory) -> None:
    rec = Recorder()
    engine = make_engine(hooks=[rec])
    text = "config: {max_parallel_steps: 2}\nsteps:\n" + "".join(
        sleeper(f"s{i}", 0.2) for i in range(4)
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.COMPLETED
    # s2 starts only after one of s0/s1 finished; ties start in declaration order
    assert rec.at("start", "s2") >= min(rec.at("success", "s0"), rec.at("success", "s1"))
    starts = [s for k, s, _ in rec.events if k == "start"]
    assert starts[:2] == ["s0", "s1"]


async def test_fail_fast_cancels_running_and_pending(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = (
        "steps:\n"
        + sleeper("slow", 30)
        + "  - {id: bad, step_type: command, parameters: {command: 'false'}}\n"
        + "  - {id: later, step_type: noop, depends_on: [bad]}\n"
        + "  - {id: other, step_type: noop, depends_on: [slow]}\n"
    )
    started = time.monotonic()
    result = await run_text(engine, text)
    assert time.monotonic() - started < 20  # not the 30 s `slow` would take
    assert result.status is MissionStatus.FAILED
    assert result.step("bad").status is StepStatus.FAILED
    assert result.step("bad").error.code == "command_failed"  # type: ignore[union-attr]
    assert result.step("slow").status is StepStatus.CANCELLED
    assert result.step("other").status is StepStatus.CANCELLED
    assert result.step("later").status in (StepStatus.SKIPPED, StepStatus.CANCELLED)
    assert result.error is not None and "bad" in result.error.message


async def test_continue_on_error_does_not_stop_or_block(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = (
        "steps:\n"
        "  - {id: flaky, step_type: command, continue_on_error: true, parameters: {command: 'false'}}\n"
        "  - {id: next, step_type: noop, depends_on: [flaky]}\n"
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.COMPLETED
    assert result.step("flaky").status is StepStatus.FAILED
    assert result.step("next").status is StepStatus.SUCCESS
    assert len(result.warnings) == 1 and "flaky" in result.warnings[0]


async def test_transitive_skip_without_fail_fast(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = (
        "config: {fail_fast: false}\nsteps:\n"
        "  - {id: a, step_type: command, parameters: {command: 'false'}}\n"
        "  - {id: b, step_type: noop, depends_on: [a]}\n"
        "  - {id: c, step_type: noop, depends_on: [b]}\n"
        "  - {id: independent, step_type: noop}\n"
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.FAILED
    assert [s.status for s in result.steps] == [
        StepStatus.FAILED,
        StepStatus.SKIPPED,
        StepStatus.SKIPPED,
        StepStatus.SUCCESS,
    ]


async def test_trigger_rule_all_done_cleanup_runs_after_failure(
    make_engine: EngineFactory, workspace: Path
) -> None:
    engine = make_engine()
    text = (
        "steps:\n"
        "  - {id: make, step_type: create_file, parameters: {path: tmp/scratch.txt, content: x}}\n"
        "  - {id: work, step_type: command, depends_on: [make], parameters: {command: 'false'}}\n"
        "  - id: cleanup\n    step_type: delete_file\n    depends_on: [work]\n    trigger_rule: all_done\n"
        "    parameters: {path: tmp/scratch.txt}\n"
        "  - id: fallback\n    step_type: log_message\n    depends_on: [work]\n    trigger_rule: one_failed\n"
        "    parameters: {message: work failed}\n"
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.FAILED
    assert result.step("cleanup").status is StepStatus.SUCCESS
    assert result.step("fallback").status is StepStatus.SUCCESS
    assert not (workspace / "tmp" / "scratch.txt").exists()


async def test_when_false_skips_and_propagates(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = (
        "variables: {deploy: false}\nsteps:\n"
        "  - {id: gate, step_type: noop, when: '{{ deploy }}'}\n"
        "  - {id: after, step_type: noop, depends_on: [gate]}\n"
        "  - {id: always, step_type: noop, when: '{{ not deploy }}'}\n"
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.COMPLETED
    assert [s.status for s in result.steps] == [
        StepStatus.SKIPPED,
        StepStatus.SKIPPED,
        StepStatus.SUCCESS,
    ]
    result = await run_text(engine, text, context={"deploy": True})
    assert [s.status for s in result.steps] == [
        StepStatus.SUCCESS,
        StepStatus.SUCCESS,
        StepStatus.SKIPPED,
    ]


async def test_templates_pass_typed_values_between_steps(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = (
        "steps:\n"
        '  - {id: fetch, step_type: parse_json, parameters: {content: \'{"items": [3, 1, 2], "n": 5}\'}}\n'
        "  - id: use\n    step_type: validate_schema\n    depends_on: [fetch]\n"
        "    parameters:\n      data: '{{ fetch.output.data.items }}'\n"
        "      schema: {type: array, items: {type: integer}, minItems: 3}\n"
        "  - id: text\n    step_type: noop\n    depends_on: [fetch]\n"
        "    parameters: {message: 'n={{ steps.fetch.output.data.n }} first={{ fetch.output.data.items[0] }}'}\n"
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.COMPLETED, result.model_dump()
    assert result.step("use").output == {"valid": True, "errors": []}
    assert result.step("text").output == {"message": "n=5 first=3"}


async def test_retries_against_flaky_server_with_growing_delays(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.fail_next(3, status=503, path="/flaky")
    engine = make_engine()
    text = (
        "steps:\n  - id: call\n    step_type: http\n"
        f"    parameters: {{url: '{url}/flaky', method: POST, body: {{a: 1}}}}\n"
        "    retry: {attempts: 4, delay_ms: 100, backoff: exponential}\n"
    )
    result = await run_text(engine, text)
    step = result.step("call")
    assert step.status is StepStatus.SUCCESS and step.attempts == 4
    times = receiver.times("/flaky")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4
    assert gaps[0] < gaps[1] < gaps[2]
    # keyed delivery: the same idempotency key on every attempt
    keys = {r.headers["idempotency-key"] for r in receiver.requests}
    assert keys == {f"{result.run_id}:call"}


async def test_rel03_retry_after_is_honoured(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.fail_next(1, status=429, path="/limited", retry_after="1")
    engine = make_engine()
    text = (
        "steps:\n  - id: call\n    step_type: http\n"
        f"    parameters: {{url: '{url}/limited'}}\n    retry: {{attempts: 2, delay_ms: 10}}\n"
    )
    result = await run_text(engine, text)
    assert result.step("call").status is StepStatus.SUCCESS
    first, second = receiver.times("/limited")
    assert second - first >= 1.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_rel03_client_errors_fail_at_once(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str], status: int
) -> None:
    receiver, url = sink
    receiver.script("/bad", Reply(status, "e" * 5000))
    engine = make_engine()
    text = (
        "steps:\n  - id: call\n    step_type: http\n"
        f"    parameters: {{url: '{url}/bad'}}\n    retry: {{attempts: 3, delay_ms: 10}}\n"
    )
    result = await run_text(engine, text)
    step = result.step("call")
    assert step.status is StepStatus.FAILED and step.attempts == 1
    assert (
        step.error is not None and step.error.status == status and step.error.code == "http_error"
    )
    assert receiver.count("/bad") == 1


async def test_rel03_connection_refused_is_retried(make_engine: EngineFactory) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    engine = make_engine()
    text = (
        "steps:\n  - id: call\n    step_type: http\n"
        f"    parameters: {{url: 'http://127.0.0.1:{port}/x'}}\n    retry: {{attempts: 2, delay_ms: 10}}\n"
    )
    result = await run_text(engine, text)
    step = result.step("call")
    assert step.status is StepStatus.FAILED and step.attempts == 3
    assert step.error is not None and step.error.code == "connection_error"


async def test_rel04_hanging_receiver_fails_at_step_timeout(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.hang("/hang")
    engine = make_engine()
    text = f"steps:\n  - id: call\n    step_type: http\n    timeout_seconds: 0.5\n    parameters: {{url: '{url}/hang'}}\n"
    started = time.monotonic()
    result = await run_text(engine, text)
    assert 0.45 < time.monotonic() - started < 20  # the step's 0.5 s, not the client's 30 s
    assert result.step("call").error.code == "timeout"  # type: ignore[union-attr]


async def test_rel04_step_timeout_kills_the_process_tree(
    make_engine: EngineFactory, workspace: Path
) -> None:
    engine = make_engine()
    # how the host finds its processes (pids are the command's own in its PID namespace)
    token = secrets.token_hex(8)
    child = f"import os, time; open('child.pid', 'w').close(); time.sleep(600)  # {token}"
    script = (
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "while not os.path.exists('child.pid'): time.sleep(0.01)\n"
        "time.sleep(600)\n"
    )
    text = (
        # long enough for the grandchild to start on a loaded machine; short beside 600 s
        "steps:\n  - id: long\n    step_type: command\n    timeout_seconds: 5\n"
        f"    parameters: {{command: {SLEEP}, args: ['-c', {json.dumps(script)}]}}\n"
    )
    started = time.monotonic()
    result = await run_text(engine, text)
    assert time.monotonic() - started < 60  # the step's 5 s, not the script's 600 s
    step = result.step("long")
    assert (
        step.status is StepStatus.FAILED and step.error is not None and step.error.code == "timeout"
    )
    assert (workspace / "child.pid").exists()
    await poll(
        lambda: asyncio.sleep(0, process_running(token)),
        lambda alive: not alive,
        seconds=20,
        what="the grandchild `sleep 600` ended with the timeout",
    )


async def test_step_timeout_precedence_under_settings_default(make_engine: EngineFactory) -> None:
    # The settings default (300 s) is present, as under every real engine: the mission's
    # config.step_timeout_seconds still applies, and a step's own timeout_seconds beats both.
    engine = make_engine()
    text = (
        "config: {step_timeout_seconds: 0.5}\nsteps:\n"
        + sleeper("a", 30, continue_on_error="true")
        + sleeper("b", 1, timeout_seconds=20)
    )
    started = time.monotonic()
    result = await run_text(engine, text)
    assert time.monotonic() - started < 15
    a, b = result.step("a"), result.step("b")
    assert a.status is StepStatus.FAILED and a.error is not None
    assert a.error.code == "timeout" and "0.5s" in a.error.message
    assert b.status is StepStatus.SUCCESS


async def test_settings_step_timeout_applies_when_the_mission_sets_none(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(step_timeout_seconds=0.5)
    result = await run_text(engine, "steps:\n" + sleeper("a", 30))
    a = result.step("a")
    assert a.error is not None and a.error.code == "timeout" and "0.5s" in a.error.message


async def test_mission_deadline(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = "config: {timeout_seconds: 0.5}\nsteps:\n" + sleeper("a", 30) + sleeper("b", 1, ["a"])
    started = time.monotonic()
    result = await run_text(engine, text)
    assert time.monotonic() - started < 20  # the mission's 0.5 s, not the 30 s step
    assert result.status is MissionStatus.FAILED
    assert result.error is not None and result.error.code == "mission_timeout"
    assert result.step("a").error.code == "timeout"  # type: ignore[union-attr]
    assert result.step("b").status is StepStatus.CANCELLED


async def test_cancellation_reports_cleanly(make_engine: EngineFactory) -> None:
    engine = make_engine()
    handle = RunHandle()
    text = "steps:\n" + sleeper("a", 30) + sleeper("b", 1, ["a"])
    task = asyncio.create_task(run_text(engine, text, handle=handle))
    await asyncio.sleep(0.3)
    handle.cancel()
    result = await asyncio.wait_for(task, 5)
    assert result.status is MissionStatus.CANCELLED
    assert [s.status for s in result.steps] == [StepStatus.CANCELLED, StepStatus.CANCELLED]


async def test_a_step_that_raises_is_failed_not_fatal(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = (
        "steps:\n  - {id: r, step_type: read_file, parameters: {path: missing.txt}}\n"
        "  - {id: t, step_type: noop, parameters: {message: '{{ context.nope.deeper }}'}}\n"
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.FAILED
    assert result.step("r").error.code == "file_not_found"  # type: ignore[union-attr]
    assert result.step("t").status in (StepStatus.FAILED, StepStatus.CANCELLED)


async def test_results_are_deterministic(make_engine: EngineFactory) -> None:
    engine = make_engine()
    text = "config: {max_concurrent_steps: 8}\nsteps:\n" + "".join(
        f"  - {{id: s{i}, step_type: noop, depends_on: {[f's{i - 1}'] if i % 3 else []}}}\n"
        for i in range(12)
    )
    first = await run_text(engine, text)
    second = await run_text(engine, text)
    assert (
        [s.step_id for s in first.steps]
        == [s.step_id for s in second.steps]
        == [f"s{i}" for i in range(12)]
    )


class Counted(Action):
    """Echoes ``message``; every validation of its parameters is written down in ``seen``."""

    seen: list[str] = []

    class Params(Params):
        message: str

        @field_validator("message")
        @classmethod
        def _count(cls, value: str) -> str:
            Counted.seen.append(value)
            return value

    class Output(Output):
        message: str

    name = "counted"

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        return {"message": params.message}


async def test_parameters_are_validated_once(tmp_path: Path, workspace: Path) -> None:
    registry = default_registry(entry_points=False)
    registry.register(Counted())
    engine = Engine.from_settings(
        make_settings(tmp_path), workspace=workspace, registry=registry, environ=TEST_ENV
    )
    Counted.seen.clear()
    try:
        prepared = engine.prepare(
            "steps:\n  - {id: a, step_type: counted, parameters: {message: hi}}\n"
            "  - id: b\n    step_type: counted\n    depends_on: [a]\n"
            "    parameters: {message: '{{ a.output.message }}!'}\n"
        )
        assert Counted.seen == ["hi"]  # the static step, at validation
        for _ in range(2):
            result = await engine.run(prepared.compiled)
            assert result.step("b").output == {"message": "hi!"}
    finally:
        await engine.aclose()
    # The static step is never validated again; the templated one once per run, rendered.
    assert Counted.seen == ["hi", "hi!", "hi!"]


@pytest.mark.parametrize(
    ("retry", "attempts"),
    [
        ("", 3),  # the spec's config.retry_attempts retries a failed step
        ("    retry: {attempts: 2, delay_ms: 0, retry_on: transient}\n", 1),  # narrowed
    ],
)
async def test_retry_attempts_retry_failed_steps_as_the_spec_reads(
    make_engine: EngineFactory, retry: str, attempts: int
) -> None:
    import sys

    text = (
        "config: {retry_attempts: 2, retry_delay_ms: 0}\nsteps:\n  - id: flaky\n"
        f"    step_type: command\n    parameters: {{command: {sys.executable}, args: [-c, 'raise SystemExit(1)']}}\n"
        + retry
    )
    step = (await run_text(make_engine(), text)).step("flaky")
    assert step.status is StepStatus.FAILED and step.attempts == attempts


async def test_refusals_and_client_errors_are_not_retried_unless_widened(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/gone", *[Reply(404, "no") for _ in range(5)])
    text = (
        "config: {retry_attempts: 2, retry_delay_ms: 0, fail_fast: false}\nsteps:\n"
        f"  - {{id: gone, step_type: http, parameters: {{url: '{url}/gone'}}}}\n"
        f"  - {{id: wide, step_type: http, parameters: {{url: '{url}/gone'}}, "
        "retry: {attempts: 2, delay_ms: 0, retry_on: any}}\n"
        "  - {id: jail, step_type: read_file, parameters: {path: ../outside}}\n"
    )
    result = await run_text(make_engine(), text)
    assert result.step("gone").attempts == 1  # a 404 will not change
    assert result.step("wide").attempts == 3  # unless the step asks for it
    assert result.step("jail").attempts == 1  # a guard's refusal never changes


async def test_a_failed_steps_output_is_readable_by_its_fallback(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    """The mission spec's "Robust Error Handling": a failing command, a fallback that reads what
    it printed and its exit code, and an HTTP error whose body a handler reads."""
    receiver, url = sink
    receiver.script("/users/7", Reply(404, {"error": "no such user", "id": 7}))
    text = (
        "config: {fail_fast: false}\nsteps:\n"
        "  - id: risky_operation\n    step_type: command\n"
        f"    parameters: {{command: {sys.executable}, "
        "args: [-c, 'print(\"partial work\"); raise SystemExit(3)']}\n"
        "    continue_on_error: true\n"
        "  - id: fallback_operation\n    step_type: noop\n    depends_on: [risky_operation]\n"
        "    trigger_rule: one_failed\n"
        "    parameters: {message: 'exit {{ risky_operation.output.exit_code }}: "
        "{{ risky_operation.output.stdout | trim }}'}\n"
        "  - id: get_user\n    step_type: http\n"
        f"    parameters: {{url: '{url}/users/7'}}\n"
        "  - id: on_missing\n    step_type: noop\n    depends_on: [get_user]\n"
        "    trigger_rule: one_failed\n"
        "    parameters: {message: '{{ get_user.output.response.error }} "
        "({{ get_user.output.status }})'}\n"
    )
    result = await run_text(make_engine(), text)
    risky = result.step("risky_operation")
    assert risky.status is StepStatus.FAILED and risky.output is not None
    assert risky.output["exit_code"] == 3 and risky.output["stdout"].strip() == "partial work"
    assert result.step("fallback_operation").output == {"message": "exit 3: partial work"}
    failed_call = result.step("get_user")
    assert failed_call.status is StepStatus.FAILED and failed_call.output is not None
    assert failed_call.output["body"] == {"error": "no such user", "id": 7}
    assert "response" not in failed_call.output  # the alias is read, never stored twice
    assert result.step("get_user").output is not None
    assert result.step("on_missing").output == {"message": "no such user (404)"}


async def test_http_output_reads_as_response_as_the_spec_writes_it(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    """The mission spec's "Variable Substitution" example, with its `llm` step as a `noop`."""
    receiver, url = sink
    receiver.script("/users/42", Reply(200, {"name": "Ada", "plan": "pro"}))
    text = (
        "steps:\n  - id: get_user_data\n    step_type: http\n"
        f"    parameters: {{url: '{url}/users/{{{{ env.USER_ID }}}}', "
        "headers: {Authorization: 'Bearer {{ env.API_TOKEN }}'}}\n"
        "  - id: process_data\n    step_type: noop\n    depends_on: [get_user_data]\n"
        "    parameters:\n      message: 'Analyze this user data: {{ get_user_data.output.response }}'\n"
        "  - id: plan\n    step_type: noop\n    depends_on: [get_user_data]\n"
        "    parameters: {message: '{{ get_user_data.output.response.plan }}'}\n"
    )
    engine = make_engine(
        environ={**TEST_ENV, "USER_ID": "42", "API_TOKEN": "sekret"},
        template_env_allow=["USER_ID", "API_TOKEN"],
    )
    result = await run_text(engine, text)
    assert result.status is MissionStatus.COMPLETED, result.model_dump()
    assert receiver.requests[0].headers["authorization"] == "Bearer sekret"
    output = result.step("process_data").output or {}
    assert output["message"] == 'Analyze this user data: {"name": "Ada", "plan": "pro"}'
    assert result.step("plan").output == {"message": "pro"}
    text = (
        "steps:\n  - {id: g, step_type: http, parameters: {url: '" + f"{url}/users/42" + "'}}\n"
        "  - {id: h, step_type: noop, depends_on: [g], "
        "parameters: {message: \"{{ g.output.get('response').plan }}\"}}\n"
    )
    receiver.script("/users/42", Reply(200, {"name": "Ada", "plan": "pro"}))
    again = await run_text(make_engine(), text)
    assert again.step("h").output == {"message": "pro"}  # .get reads the alias too
    assert set(result.step("get_user_data").output or {}) == {
        "status",
        "headers",
        "body",
        "url",
        "elapsed_ms",
    }


async def test_config_values_render_in_json_spelling_and_custom_keys_are_kept(
    make_engine: EngineFactory,
) -> None:
    text = (
        "config: {fail_fast: true, api_base: 'https://api.example.com', retries_wanted: 2}\n"
        "steps:\n  - id: show\n    step_type: noop\n    parameters:\n"
        "      message: 'fail_fast={{ config.fail_fast }} base={{ config.api_base }} "
        "none={{ none }} list={{ [1, true] }}'\n"
    )
    engine = make_engine()
    prepared = engine.prepare(text)
    assert prepared.warnings == ()  # a key of the mission's own is not a mistake
    result = await engine.run(prepared.mission)
    output = result.step("show").output or {}
    assert output["message"] == (
        "fail_fast=true base=https://api.example.com none=null list=[1, true]"
    )
    # a misspelt setting is still reported
    near_miss = engine.prepare("config: {fail_fst: false}\nsteps:\n  - {id: a, step_type: noop}\n")
    assert [w.code for w in near_miss.warnings] == ["unknown_key"]


ESCAPE = (
    "import os, sys, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"  # leaves the process group the engine kills
    "    open('escaped.pid', 'w').close()\n"
    "    time.sleep(600)\n"  # and keeps stdout open
    "    sys.exit(0)\n"
    "while not os.path.exists('escaped.pid'): time.sleep(0.01)\n"
    "print('parent done', flush=True)\n"
    "{tail}"
)


@pytest.mark.parametrize(
    ("tail", "timeout", "status"),
    [("", 60, StepStatus.SUCCESS), ("time.sleep(600)\n", 2, StepStatus.FAILED)],
    ids=["program-ends", "program-times-out"],
)
async def test_a_process_that_left_with_setsid_does_not_outlive_its_step(
    make_engine: EngineFactory, workspace: Path, tail: str, timeout: int, status: StepStatus
) -> None:
    """F: a child that calls setsid() and keeps the pipes open neither holds the step open
    (past the program's end, or its timeout) nor survives it."""
    token = secrets.token_hex(8)  # how the host finds the command's processes
    code = ESCAPE.format(tail=tail) + f"# {token}\n"
    text = (
        f"steps:\n  - id: c\n    step_type: command\n    timeout_seconds: {timeout}\n"
        f"    parameters: {{command: {SLEEP}, args: ['-c', {json.dumps(code)}]}}\n"
    )
    result = await run_text(make_engine(), text)
    step = result.step("c")
    assert step.status is status, step.error
    if status is StepStatus.SUCCESS:
        assert (step.output or {})["stdout"] == "parent done\n"
    assert (workspace / "escaped.pid").exists()
    await poll(
        lambda: asyncio.sleep(0, process_running(token)),
        lambda alive: not alive,
        seconds=20,
        what="the setsid() child ended with its step",
    )
