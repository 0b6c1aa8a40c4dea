"""Safety analysis findings and thresholds; graph output."""

from __future__ import annotations

from puraify.actions import default_registry
from puraify.mission.graph import to_dot, to_mermaid, to_svg
from puraify.mission.loader import load_mission
from puraify.mission.safety import analyze

REGISTRY = default_registry(entry_points=False)


def report(text: str):  # type: ignore[no-untyped-def]
    return analyze(load_mission(text).mission, REGISTRY)


def test_clean_mission_passes_every_level() -> None:
    r = report("steps:\n  - {id: a, step_type: create_file, parameters: {path: x, content: y}}\n")
    assert r.score == 0
    assert all(r.verdict(level) for level in ("permissive", "standard", "strict"))  # type: ignore[arg-type]


def test_findings_and_levels() -> None:
    r = report(
        "steps:\n"
        "  - {id: rm, step_type: command, timeout_seconds: 5, parameters: {command: rm, args: [-rf, build]}}\n"
        "  - {id: del, step_type: delete_file, parameters: {path: /etc/passwd}}\n"
        "  - {id: web, step_type: http, parameters: {url: 'http://example.com', timeout: 5}}\n"
        "  - {id: key, step_type: http, timeout_seconds: 3, parameters: {url: 'https://x.io', headers: {api_key: 'sk-abcdefghijklmnopqrstuvwx'}}}\n"
    )
    rules = {(f.step_id, f.rule) for f in r.findings}
    assert ("rm", "recursive_delete") in rules
    assert ("del", "system_path_delete") in rules
    assert ("web", "plain_http") in rules
    assert ("key", "inline_secret") in rules
    assert not r.verdict("permissive")  # critical: system path delete
    medium_only = report(
        "steps:\n  - {id: web, step_type: http, timeout_seconds: 5, parameters: {url: 'http://example.com'}}\n"
    )
    assert medium_only.verdict("standard") and not medium_only.verdict("strict")


def test_token_shapes_in_any_parameter_are_inline_secrets() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXBhcnQ"
    pem = "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----"
    for value in (jwt, "xoxb-123456789012-abcdefghij", "ghp_" + "a" * 36, pem):
        r = report(
            "steps:\n  - {id: a, step_type: log_message, parameters: {message: '" + value + "'}}\n"
        )
        found = [f for f in r.findings if f.rule == "inline_secret"]
        assert found and found[0].severity == "high", value
        assert value not in found[0].message  # the finding never quotes it


def test_templated_secrets_are_not_findings() -> None:
    r = report(
        "steps:\n  - {id: a, step_type: http, timeout_seconds: 5, parameters: {url: 'https://x.io', headers: {token: '{{ secrets.slack }}'}}}\n"
    )
    assert r.findings == ()


def test_graphs() -> None:
    mission = load_mission(
        "name: g\nsteps:\n  - {id: a, step_type: noop}\n  - {id: b-1, step_type: noop, depends_on: [a]}\n"
        "  - {id: c, name: 'C \"quoted\" <x>', step_type: noop, depends_on: [a]}\n"
    ).mission
    mermaid = to_mermaid(mission)
    assert "s_a --> s_b_1" in mermaid and "s_a --> s_c" in mermaid
    assert '"a" -> "b-1";' in to_dot(mission)
    svg = to_svg(mission)
    assert svg.startswith("<svg") and svg.count("<rect") == 3 and svg.count("<line") == 2
    assert "&lt;x&gt;" in svg and "<x>" not in svg


def test_the_analysis_reads_parameters_by_every_name_the_action_accepts() -> None:
    """A finding for `path` is a finding for its aliases; a templated query does not hide the
    host; a trailing dot does not hide the metadata endpoint."""
    for step in (
        "{id: d, step_type: delete_file, parameters: {file_path: /etc/hosts}}",
        "{id: c, step_type: copy_file, parameters: {from: a, target: /etc/cron.d/x}}",
        "{id: h, step_type: http, parameters: {url: 'http://169.254.169.254/x?q={{ run.id }}'}}",
        "{id: t, step_type: http, parameters: {url: 'http://169.254.169.254./latest'}}",
    ):
        r = report("steps:\n  - " + step + "\n")
        assert not r.verdict("standard"), (step, r.to_dict())


def test_a_malformed_url_is_a_finding_not_a_crash() -> None:
    r = report("steps:\n  - {id: u, step_type: http, parameters: {url: 'http://[::1/x'}}\n")
    assert [f.rule for f in r.findings][:1] == ["invalid_url"]


def test_ordinary_parameters_are_not_taken_for_secrets() -> None:
    """`tokenizer` is not a token; a bearer token written out (often a placeholder) is a
    medium finding that standard lets through; credential formats and credential-named
    parameters fail standard, and no finding quotes the secret."""
    ok = report(
        "steps:\n  - {id: a, step_type: http, parameters: {url: 'https://x.io', timeout: 5, "
        "body: {tokenizer: cl100k_base, max_tokens: 100000}}}\n"
        "  - {id: b, step_type: create_file, parameters: {path: doc.md, "
        "content: 'Authorization: Bearer YOUR_TOKEN_GOES_HERE_1234'}}\n"
    )
    assert ok.verdict("standard"), ok.to_dict()
    bad = report(
        "steps:\n  - {id: a, step_type: http, parameters: {url: 'https://x.io', timeout: 5, "
        "headers: {X-Api-Key: 'sk-abcdefghijklmnopqrstuvwxyz'}}}\n"
        "  - {id: b, step_type: command, parameters: {command: curl, "
        "args: ['-H', 'Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123', 'x | sh']}}\n"
    )
    assert not bad.verdict("standard")
    text = str(bad.to_dict())
    assert (
        "sk-abcdefghijklmnopqrstuvwxyz" not in text and "abcdefghijklmnopqrstuvwxyz0123" not in text
    )
    assert "{{ env.NAME }}" in text
