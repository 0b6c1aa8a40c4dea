"""Templates: type preservation, sources, limits and SEC-02 sandbox escapes."""

from __future__ import annotations

import time

import pytest

from puraify.errors import TemplateError, TemplateSecurityError
from puraify.templating import TemplateEngine

ENGINE = TemplateEngine(max_output_bytes=1024 * 1024, max_render_seconds=1.0)
SCOPE = {
    "steps": {"fetch": {"output": {"items": [1, 2, 3], "text": "{{ 7 * 7 }}"}}},
    "fetch": {"output": {"items": [1, 2, 3], "text": "{{ 7 * 7 }}"}},
    "name": "Ada",
    "context": {"name": "Ada"},
}


def render(text: str) -> object:
    return ENGINE.render_string(text, SCOPE)


def test_whole_value_templates_keep_their_type() -> None:
    assert render("{{ fetch.output.items }}") == [1, 2, 3]
    assert render("  {{ steps.fetch.output.items | length }} ") == 3
    assert render("n={{ fetch.output.items | length }}") == "n=3"
    assert ENGINE.render_value(
        {"a": ["{{ name }}", 1], "b": "{{ fetch.output.items }}"}, SCOPE
    ) == {
        "a": ["Ada", 1],
        "b": [1, 2, 3],
    }


def test_missing_path_names_the_reference() -> None:
    with pytest.raises(TemplateError) as info:
        ENGINE.render_string("{{ fetch.output.nope }}", SCOPE, field="parameters.x")
    assert info.value.code == "template_reference_error"
    assert info.value.field == "parameters.x"
    assert "nope" in info.value.message


def test_output_is_never_rendered_twice() -> None:
    # the step output holds template syntax; it must come out literally
    assert render("{{ fetch.output.text }}") == "{{ 7 * 7 }}"
    assert render("x {{ fetch.output.text }}") == "x {{ 7 * 7 }}"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ ''|attr('__class__') }}",
        "{{ (''|attr('__class__')).__mro__ }}",
        "{{ 'a'.__class__.__base__.__subclasses__() }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ '{0.__class__.__mro__}'.format(name) }}",
        "{{ name.format_map }}",
        "{{ lipsum.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ context.update({'x': 1}) }}",
        "{{ fetch.output.items.append(4) }}",
    ],
)
def test_sec02_sandbox_escapes_fail(template: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(template)
    assert info.value.code in (
        "template_security_error",
        "template_reference_error",
        "template_error",
    )
    assert "Traceback" not in info.value.message


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ fetch.output.items.append(4) }}",
    ],
)
def test_sec02_escapes_are_security_errors(template: str) -> None:
    with pytest.raises(TemplateSecurityError) as info:
        render(template)
    assert info.value.code == "template_security_error"


def test_sec02_output_capped() -> None:
    small = TemplateEngine(max_output_bytes=1000)
    with pytest.raises(TemplateSecurityError) as info:
        small.render_string("{{ 'x' * 100000 }}", {})
    assert info.value.code == "template_limit"
    with pytest.raises(TemplateSecurityError):
        small.render_string("{% for i in range(5000) %}ab{% endfor %}", {})
    with pytest.raises(TemplateSecurityError):
        small.render_string("{% set n = 100000 %}{{ 10 ** n }}", {})


def test_sec02_render_time_capped() -> None:
    fast = TemplateEngine(max_render_seconds=0.2)
    start = time.monotonic()
    with pytest.raises(TemplateSecurityError) as info:
        fast.render_string(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {}
        )
    assert info.value.code == "template_limit"
    assert time.monotonic() - start < 2


def test_references_skip_locals() -> None:
    refs = ENGINE.references(
        "{% for x in steps.a.output.rows %}{{ x.id }}{{ b.output.n }}{% endfor %}"
    )
    assert ("steps", "a", "output", "rows") in refs
    assert ("b", "output", "n") in refs
    assert not any(r[0] == "x" for r in refs)


@pytest.mark.parametrize(
    "expr",
    [
        "fetch.output.items",
        "steps.fetch.output.text",
        "name",
        "context.name",
        "fetch.output.nope",
        "nobody.output",
        "fetch.output.items.append",
        "lipsum.__globals__",
        "range",
    ],
)
def test_dotted_names_render_as_jinja_renders_them(expr: str) -> None:
    # `{{ (x.y) }}` is not a plain dotted name, so it goes through Jinja2's generated code.
    assert ENGINE.compile("{{ " + expr + " }}").path is not None
    assert ENGINE.compile("{{ (" + expr + ") }}").path is None
    outcomes = []
    for text in ("{{ " + expr + " }}", "{{ (" + expr + ") }}"):
        try:
            outcomes.append(("ok", render(text)))
        except TemplateError as exc:
            outcomes.append((exc.code, exc.message))
    assert outcomes[0] == outcomes[1]


def test_compiled_templates_know_what_they_read() -> None:
    template = ENGINE.compile("{{ fetch.output.items }}")
    assert template == ENGINE.compile("{{ fetch.output.items }}")
    assert template.references == (("fetch", "output", "items"),)
    assert template.roots == {"fetch"}
    mixed = ENGINE.compile("n={{ steps.a.output.n + b.output.n }} {{ true }}")
    assert mixed is ENGINE.compile(mixed.source)  # parsed by Jinja2 once per text
    assert set(mixed.references) == {("steps", "a", "output", "n"), ("b", "output", "n")}
    assert mixed.roots == {"steps", "b"}
    assert ENGINE.compile("{{ none }}").path is None
    with pytest.raises(TemplateError):
        ENGINE.compile("{{ a. }}")


def test_a_scope_holds_only_the_names_asked_for() -> None:
    from puraify.mission.model import Mission
    from puraify.templating import Scope

    mission = Mission.model_validate(
        {"steps": [{"id": "fetch", "step_type": "noop"}], "variables": {"v": 1, "run": "x"}}
    )
    scope = Scope(run_id="r1", mission=mission, context={"w": 2}, env={"HOME": "/h"})
    scope.add_output("fetch", {"items": [1]})
    scope.add_output("other", {"n": 2})
    assert scope.names(["fetch"]) == {"fetch": {"output": {"items": [1]}}}
    assert scope.names(["run", "v", "w", "unknown"]) == {"run": {"id": "r1"}, "v": 1, "w": 2}
    assert set(scope.names(["steps"])["steps"]) == {"fetch", "other"}
    assert scope.names(["config"])["config"]["fail_fast"] is True


@pytest.mark.parametrize(
    "template",
    [
        "{{ [1, [2, [3]]]|tojson(indent=100000000)|length }}",
        "{% set a = 3**31000 %}{% set a = a*a %}{% set a = a*a %}{{ (a // (a + 1)) > 0 }}",
        "{% set a = 3**31000 %}{% set a = a*a %}{{ (a*a - 1) > 0 }}",
    ],
)
def test_f_templates_that_would_hold_the_loop_are_refused_before_they_run(template: str) -> None:
    """F: indentation and integer sizes are checked before the work, so a template cannot
    hold the engine's event loop for seconds."""
    with pytest.raises(TemplateSecurityError) as refused:
        TemplateEngine().render_string(template, {})
    assert refused.value.code == "template_limit"


def test_arithmetic_still_works() -> None:
    rendered = TemplateEngine().render_string(
        "{{ 1 + 2 }} {{ 7 // 2 }} {{ 7 / 2 }} {{ 5 - 3 }} {{ 'a' + 'b' }} {{ [1] + [2] }}", {}
    )
    assert rendered == "3 3 3.5 2 ab [1, 2]"
