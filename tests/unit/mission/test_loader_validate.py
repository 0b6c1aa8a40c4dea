"""Loading compatibility (DESIGN.md §3) and validation before anything runs."""

from __future__ import annotations

import pytest

from puraify.actions import default_registry
from puraify.errors import LoadError, ValidationError
from puraify.mission.loader import load_mission, normalize_step_type
from puraify.mission.validate import validate_mission
from puraify.templating import TemplateEngine

REGISTRY = default_registry(entry_points=False)
TEMPLATES = TemplateEngine()


def check(text: str, **kw: object):  # type: ignore[no-untyped-def]
    return validate_mission(load_mission(text, filename="m.yaml"), REGISTRY, TEMPLATES, **kw)  # type: ignore[arg-type]


def issues(text: str, **kw: object) -> list[dict[str, object]]:
    with pytest.raises(ValidationError) as info:
        check(text, **kw)
    return [i.to_dict() for i in info.value.issues if i.severity == "error"]


def test_name_optional_pascal_case_and_config_aliases() -> None:
    loaded = load_mission(
        "version: 1.0\nconfig: {parallel_limit: 3, retry_count: 2}\n"
        "steps:\n  - id: a\n    step_type: CreateFile\n    parameters: {path: x, content: y}\n"
    )
    mission = loaded.mission
    assert mission.name is None and mission.display_name == "mission"
    assert mission.version == "1.0"
    assert mission.steps[0].step_type == "create_file"
    assert mission.steps[0].display_name == "a"
    assert mission.config.max_concurrent_steps == 3
    assert mission.config.retry_attempts == 2
    assert (
        load_mission(
            "config: {max_parallel_steps: 5}\nsteps: []\n"
        ).mission.config.max_concurrent_steps
        == 5
    )
    assert normalize_step_type("ParseJson") == "parse_json"


def test_unknown_keys_warn_with_suggestion_and_fail_when_strict() -> None:
    text = "name: m\nsteps:\n  - id: a\n    step_type: noop\n    depend_on: [b]\n"
    loaded = load_mission(text)
    (warning,) = loaded.warnings
    assert warning.code == "unknown_key" and warning.severity == "warning"
    assert "did you mean 'depends_on'" in warning.message
    assert warning.line == 5 and warning.step_id == "a"
    with pytest.raises(ValidationError) as info:
        load_mission(text, strict=True)
    assert info.value.issues[0].severity == "error"


def test_structural_errors_have_lines() -> None:
    with pytest.raises(LoadError) as info:
        load_mission("name: x\n")
    assert info.value.code == "invalid_mission"
    with pytest.raises(ValidationError) as vinfo:
        load_mission("steps:\n  - id: a\n    step_type: noop\n    timeout_seconds: -1\n")
    issue = vinfo.value.issues[0]
    assert issue.code == "invalid_field" and issue.line == 4 and issue.step_id == "a"


def test_duplicate_ids_and_missing_dependency_with_suggestion() -> None:
    found = issues(
        "steps:\n  - {id: fetch, step_type: noop}\n  - {id: fetch, step_type: noop}\n"
        "  - {id: use, step_type: noop, depends_on: [fetc]}\n"
    )
    codes = [i["code"] for i in found]
    assert codes == ["duplicate_step_id", "missing_dependency"]
    assert found[1]["hint"] == "did you mean 'fetch'?"
    assert found[0]["line"] == 3


def test_cycle_reported_with_its_path() -> None:
    found = issues(
        "steps:\n  - {id: a, step_type: noop, depends_on: [c]}\n"
        "  - {id: b, step_type: noop, depends_on: [a]}\n  - {id: c, step_type: noop, depends_on: [b]}\n"
        "  - {id: d, step_type: noop}\n"
    )
    (cycle,) = found
    assert cycle["code"] == "dependency_cycle"
    path = cycle["cycle"]
    assert path[0] == path[-1] and set(path) == {"a", "b", "c"} and len(path) == 4
    assert " -> ".join(path) in str(cycle["message"])


def test_self_dependency_is_a_cycle() -> None:
    assert (
        issues("steps:\n  - {id: a, step_type: noop, depends_on: [a]}\n")[0]["code"]
        == "dependency_cycle"
    )


def test_unknown_step_type_suggests() -> None:
    (issue,) = issues("steps:\n  - {id: a, step_type: creat_file, parameters: {path: x}}\n")
    assert issue["code"] == "unknown_step_type" and issue["hint"] == "did you mean 'create_file'?"


def test_parameters_checked_against_model_but_templated_fields_wait() -> None:
    found = issues(
        "steps:\n  - {id: a, step_type: http, parameters: {method: GET, timeout: soon}}\n"
    )
    assert [i["field"] for i in found] == ["parameters.url", "parameters.timeout"]
    assert {i["code"] for i in found} == {"invalid_parameters"}
    assert found[1]["line"] == 2
    check(
        "variables: {t: 5, u: 'http://x'}\nsteps:\n"
        "  - {id: a, step_type: http, parameters: {url: '{{ u }}', timeout: '{{ t }}'}}\n"
    )


def test_unknown_parameter_is_a_warning() -> None:
    validated = check(
        "steps:\n  - {id: a, step_type: http, parameters: {url: 'http://x', on_error: go}}\n"
    )
    assert [w.code for w in validated.warnings] == ["unknown_parameter"]


def test_reference_to_non_upstream_step_rejected() -> None:
    found = issues(
        "steps:\n  - {id: a, step_type: noop}\n  - {id: b, step_type: noop}\n"
        "  - id: c\n    step_type: noop\n    depends_on: [a]\n"
        "    parameters: {message: '{{ steps.b.output.message }} {{ a.output.message }}'}\n"
    )
    (issue,) = found
    assert issue["code"] == "invalid_reference" and "'b'" in str(issue["message"])


def test_transitive_upstream_reference_is_fine() -> None:
    check(
        "steps:\n  - {id: a, step_type: noop}\n  - {id: b, step_type: noop, depends_on: [a]}\n"
        "  - {id: c, step_type: noop, depends_on: [b], parameters: {message: '{{ a.output.message }}'}}\n"
    )


def test_unknown_reference_and_context_names() -> None:
    (issue,) = issues("steps:\n  - {id: a, step_type: noop, parameters: {message: '{{ nmae }}'}}\n")
    assert issue["code"] == "unknown_reference"
    check(
        "steps:\n  - {id: a, step_type: noop, parameters: {message: '{{ name }}'}}\n",
        context_names=["name"],
    )
    check(
        "steps:\n  - id: a\n    step_type: noop\n    parameters:\n"
        '      message: "{% for x in context.items %}{{ x }}{% endfor %} {{ env.HOME }} {{ run.id }}"\n'
    )


def test_template_syntax_error_is_reported() -> None:
    (issue,) = issues("steps:\n  - {id: a, step_type: noop, parameters: {message: '{{ a. }}'}}\n")
    assert issue["code"] == "template_error"


def test_too_many_steps() -> None:
    text = "steps:\n" + "".join(f"  - {{id: s{i}, step_type: noop}}\n" for i in range(5))
    assert issues(text, max_steps=4)[0]["code"] == "too_many_steps"


def test_diamond_and_long_chain_references_follow_the_dependencies() -> None:
    check(
        "steps:\n  - {id: a, step_type: noop}\n  - {id: b, step_type: noop, depends_on: [a]}\n"
        "  - {id: c, step_type: noop, depends_on: [a]}\n"
        "  - id: d\n    step_type: noop\n    depends_on: [b, c]\n"
        "    parameters: {message: '{{ a.output.message }}{{ steps.c.output.message }}'}\n"
    )
    chain = "steps:\n  - {id: s0, step_type: noop}\n" + "".join(
        f"  - {{id: s{i}, step_type: noop, depends_on: [s{i - 1}], "
        f"parameters: {{message: '{{{{ s{i - 1}.output.message }}}}'}}}}\n"
        for i in range(1, 300)
    )
    check(chain)
    found = issues(
        chain + "  - {id: x, step_type: noop, parameters: {message: '{{ s5.output }}'}}\n"
    )
    assert [i["code"] for i in found] == ["invalid_reference"]


def test_a_valid_mission_comes_back_compiled() -> None:
    validated = check(
        "config: {retry_attempts: 2, step_timeout_seconds: 7}\n"
        "steps:\n  - {id: a, step_type: Log, parameters: {message: hi, level: warning}}\n"
        "  - id: b\n    step_type: CallWebhook\n    depends_on: [a]\n    timeout_seconds: 3\n"
        "    retry: {attempts: 5}\n    when: '{{ a.output.level == \"warning\" }}'\n"
        "    parameters:\n      url: 'http://x/{{ run.id }}'\n      method: POST\n"
        "      json: {n: '{{ steps.a.output.message }}', fixed: [1, '{{ context.k }}']}\n",
        context_names=["k"],
        default_step_timeout=60,
    )
    a, b = validated.compiled.steps
    assert validated.compiled.mission is validated.mission
    assert a.action == "log_message" and not a.templated and not a.roots
    assert a.params is not None and a.params.level == "warning"  # type: ignore[attr-defined]
    assert a.timeout == 7 and a.retry.attempts == 2 and a.retry.backoff == "fixed"
    assert b.action == "webhook.call" and b.params is None
    assert set(b.templated) == {"url", "json"}
    assert b.templated["json"]["fixed"][0] == 1
    slot = b.templated["json"]["n"]
    assert (
        slot.field == "parameters.json.n" and slot.template.source == "{{ steps.a.output.message }}"
    )
    assert b.roots == {"run", "steps", "context"}
    assert b.when is not None and b.when.roots == {"a"}
    assert b.timeout == 3 and b.retry.attempts == 5


def test_step_timeout_precedence_when_compiled() -> None:
    text = "steps:\n  - {id: a, step_type: noop}\n"
    assert check(text).compiled.steps[0].timeout == 300
    assert check(text, default_step_timeout=60).compiled.steps[0].timeout == 60
    with_config = "config: {step_timeout_seconds: 9}\n" + text
    assert check(with_config, default_step_timeout=60).compiled.steps[0].timeout == 9


@pytest.mark.parametrize(
    "step_type", ["compress", "git_diff", "GitMerge", "process_start", "similarity_search"]
)
def test_a_spec_step_type_not_built_gets_no_misleading_suggestion(step_type: str) -> None:
    from puraify.actions import default_registry
    from puraify.errors import ValidationError
    from puraify.mission.loader import load_mission
    from puraify.mission.validate import validate_mission
    from puraify.templating.render import TemplateEngine

    loaded = load_mission(f"steps:\n  - {{id: s, step_type: {step_type}}}\n")
    with pytest.raises(ValidationError) as info:
        validate_mission(loaded, default_registry(), TemplateEngine())
    issue = info.value.issues[0]
    assert issue.code == "unknown_step_type" and issue.hint is None
    assert "mission spec" in issue.message and "did you mean" not in issue.message


def test_references_are_checked_in_a_step_of_unknown_type() -> None:
    found = issues("steps:\n  - {id: a, step_type: nope, parameters: {x: '{{ b.output }}'}}\n")
    assert {i["code"] for i in found} == {"unknown_step_type", "unknown_reference"}
