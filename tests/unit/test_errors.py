"""The code registry is complete and sound, statuses and exit codes follow it (then the MRO),
and docs/errors.md is what the registry generates."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

import puraify
from puraify.api.errors import ApiError, status_for, status_for_code
from puraify.cli.errors import exit_code_for
from puraify.codes import CODES, ErrorCode, ExitCode, describe, markdown
from puraify.errors import (
    ActionError,
    GuardError,
    LoadError,
    MissionError,
    PolicyDenied,
    PuraifyError,
    StepTimeout,
    StoreError,
    TemplateError,
    TemplateSecurityError,
    ValidationError,
    VaultError,
)
from puraify.store.idempotency import IdempotencyConflict, InvalidIdempotencyKey

PACKAGE = Path(puraify.__file__).parent
DOCS = PACKAGE.parent / "docs" / "errors.md"

# The executor's own signal for a step whose `when` is false: the step is recorded as skipped,
# with no error, so no user ever sees this code.
NOT_REPORTED = {"when_false"}

# Codes the pure core gives a run's outcome (mission/outcome.py), not a document's mistake.
OUTCOMES = {"mission_timeout"}

# Codes that are the caller's mistake besides every load, validation and template code.
CALLERS_MISTAKES = {
    "bad_request",
    "body_too_large",
    "command_disabled",
    "command_refused",
    "file_exists",
    "file_not_found",
    "file_type_refused",
    "forbidden",
    "guard_refused",
    "idempotency_conflict",
    "invalid_idempotency_key",
    "invalid_parameters",
    "invalid_project",
    "invalid_request",
    "invalid_schema",
    "invalid_scope",
    "invalid_url",
    "method_not_allowed",
    "not_found",
    "path_outside_jail",
    "policy_denied",
    "run_busy",
    "run_not_found",
    "schema_mismatch",
    "ssrf_blocked",
    "unauthenticated",
    "unknown_action",
    "unsupported_media_type",
}


def _code_values(node: ast.AST) -> Iterator[str]:
    """Literal codes in an expression: ``"timeout"`` and ``ErrorCode.TIMEOUT`` alike."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value
        elif (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Name)
            and sub.value.id == "ErrorCode"
        ):
            yield ErrorCode[sub.attr].value


def _dataclass_positions(tree: ast.AST) -> dict[str, set[int]]:
    """Dataclasses with a ``code`` field, and that field's position in the constructor."""
    out: dict[str, set[int]] = defaultdict(set)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            fields = [
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            ]
            decorators = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
            if "code" in fields and decorators & {"dataclass", "dataclasses.dataclass"}:
                out[node.name].add(fields.index("code"))
    return out


def _function_positions(tree: ast.AST) -> dict[str, set[int]]:
    """Functions and methods with a positional ``code`` parameter, and its position."""
    out: dict[str, set[int]] = defaultdict(set)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
            if names[:1] in (["self"], ["cls"]):
                names = names[1:]
            if "code" in names:
                out[node.name].add(names.index("code"))
    return out


def produced_codes() -> dict[str, set[str]]:
    """Every code literal the package can put in an error, with where it appears.

    Looked for: ``code=...`` arguments, ``code``/``default_code`` assignments, ``"code": ...``
    in dict literals, and positional ``code`` arguments of the module's own functions (an
    ``add(code, message, ...)`` helper, ``self.error(message, code, mark)``) and of dataclasses
    with a ``code`` field (``Issue("unknown_key", ...)``).
    """
    trees = {path: ast.parse(path.read_text(), str(path)) for path in PACKAGE.rglob("*.py")}
    dataclasses: dict[str, set[int]] = defaultdict(set)
    for tree in trees.values():
        for name, positions in _dataclass_positions(tree).items():
            dataclasses[name] |= positions
    found: dict[str, set[str]] = defaultdict(set)
    for path, tree in trees.items():
        where = path.relative_to(PACKAGE.parent).as_posix()
        positional = {**dataclasses, **_function_positions(tree)}
        for node in ast.walk(tree):
            exprs: list[ast.AST] = []
            if isinstance(node, ast.Call):
                exprs += [kw.value for kw in node.keywords if kw.arg == "code"]
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                for index in positional.get(name or "", ()):
                    if index < len(node.args):
                        exprs.append(node.args[index])
            elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if names & {"code", "default_code"}:
                    exprs.append(node.value)
            elif isinstance(node, ast.Dict):
                exprs += [
                    value
                    for key, value in zip(node.keys, node.values, strict=True)
                    if isinstance(key, ast.Constant) and key.value == "code"
                ]
            for expr in exprs:
                for code in _code_values(expr):
                    found[code].add(f"{where}:{node.lineno}")
    return found


@pytest.fixture(scope="module")
def produced() -> dict[str, set[str]]:
    return produced_codes()


def test_the_scan_sees_every_way_a_code_is_given(produced: dict[str, set[str]]) -> None:
    # one code per pattern, so that a scan that stopped seeing one cannot pass unnoticed
    assert "ssrf_blocked" in produced  # code="..." keyword
    assert "internal_error" in produced  # default_code = ErrorCode.INTERNAL_ERROR
    assert "unknown_step_type" in produced  # add("unknown_step_type", ...) in validate.py
    assert "unknown_key" in produced  # Issue("unknown_key", ...)
    assert "too_many_aliases" in produced  # self.error(message, "too_many_aliases", mark)
    assert "method_not_allowed" in produced  # code = {404: ..., 405: ...}.get(...)
    assert "cancelled" in produced  # code = ... else "cancelled"; {"code": code, ...}


def test_every_code_the_package_produces_is_registered(produced: dict[str, set[str]]) -> None:
    missing = {
        code: sorted(places)
        for code, places in produced.items()
        if describe(code) is None and code not in NOT_REPORTED
    }
    assert missing == {}, "add these to puraify/codes.py (and regenerate docs/errors.md)"


def test_every_registered_code_is_produced(produced: dict[str, set[str]]) -> None:
    unused = {code.value for code in ErrorCode} - set(produced)
    assert unused == set(), "the registry lists codes nothing raises"
    assert set(produced) >= NOT_REPORTED and not any(describe(c) for c in NOT_REPORTED)


def test_every_code_has_a_status_and_a_sentence() -> None:
    assert set(CODES) == set(ErrorCode)
    for code, info in CODES.items():
        assert HTTPStatus(info.status) is info.status, code
        assert 400 <= info.status < 600, code
        assert info.exit_code is None or ExitCode(info.exit_code) is info.exit_code, code
        sentence = info.sentence.strip()
        assert sentence == info.sentence and sentence[0].isupper() and sentence[-1] == ".", code
        assert describe(code.value) is info


def test_a_callers_mistake_is_never_a_5xx(produced: dict[str, set[str]]) -> None:
    from_documents = {
        code
        for code, places in produced.items()
        if code not in NOT_REPORTED | OUTCOMES
        and any(p.startswith(("puraify/mission/", "puraify/templating/")) for p in places)
    }
    assert {"yaml_syntax", "dependency_cycle", "template_limit"} <= from_documents
    wrong = {
        code: int(CODES[ErrorCode(code)].status)
        for code in from_documents | CALLERS_MISTAKES
        if not 400 <= CODES[ErrorCode(code)].status < 500
    }
    assert wrong == {}


def test_exit_codes_agree_with_statuses() -> None:
    for code, info in CODES.items():
        if info.exit_code is ExitCode.INVALID:
            assert 400 <= info.status < 500, code
        if info.exit_code is ExitCode.INTERNAL:
            assert info.status >= 500, code


def test_docs_errors_md_is_generated_from_the_registry() -> None:
    text = markdown()
    assert DOCS.read_text() == text, "run `python -m puraify.codes > docs/errors.md`"
    for code, info in CODES.items():
        assert f"| `{code.value}` | {int(info.status)} |" in text


def test_python_m_puraify_codes_prints_the_docs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "puraify.codes"], capture_output=True, text=True, check=True
    ).stdout
    assert out == markdown()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        # a registered code answers its own status, whatever class carries it
        (StoreError("no run 'x'", code="run_not_found"), 404),
        (StoreError("busy", code="run_busy"), 409),
        (GuardError("exists", code="file_exists"), 409),
        (ApiError("still running", code="timeout"), 504),
        (ValidationError([]), 422),
        (InvalidIdempotencyKey("too long"), 400),
        (IdempotencyConflict("used with another body"), 409),
        # an unregistered code answers the status of the nearest class that declares one
        (ActionError("quota exceeded", code="slack_rate_limited"), 502),
        (GuardError("refused", code="archive_rejected"), 403),
        (StepTimeout("too slow"), 504),
        (LoadError("bad", code="something_new"), 422),
        (TemplateSecurityError("escape", code="something_new"), 422),
        (ApiError("nope", code="something_new"), 400),
        (PolicyDenied("no", code="something_new"), 403),
        (VaultError("locked", code="something_new"), 500),
        (StoreError("disk", code="something_new"), 500),
        (PuraifyError("odd", code="something_new"), 500),
        (ValueError("not ours"), 500),
    ],
)
def test_status_by_code_then_by_type(error: BaseException, status: int) -> None:
    assert status_for(error) == status


def test_a_subclass_without_a_status_inherits_its_parents() -> None:
    class RateLimited(GuardError):
        default_code = "plugin_rate_limited"

    class Unusual(MissionError):
        pass

    assert status_for(RateLimited("slow down")) == 403
    assert status_for(Unusual("odd", code="plugin_code")) == 422


def test_status_for_code_falls_back_for_a_failed_platform_call() -> None:
    assert status_for_code("ssrf_blocked") == 403
    assert status_for_code(ErrorCode.TIMEOUT) == 504
    assert status_for_code("plugin_quota_exceeded") == 502
    assert status_for_code("plugin_quota_exceeded", fallback=500) == 500


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (LoadError("bad yaml", code="yaml_syntax"), 2),
        (LoadError("no file", code="file_not_found"), 2),
        (ValidationError([]), 2),
        (TemplateError("bad", code="template_error"), 2),
        (StoreError("no run 'x'", code="run_not_found"), 2),
        (StoreError("busy", code="run_busy"), 2),
        (StoreError("unknown scopes", code="invalid_scope"), 2),
        (StoreError("cannot reach the database", code="store_unavailable"), 3),
        (StoreError("disk full"), 3),
        (StoreError("odd", code="something_new"), 3),
        (MissionError("odd", code="something_new"), 2),
        (TemplateSecurityError("odd", code="something_new"), 2),
        (ActionError("quota exceeded", code="plugin_quota"), 1),
        (PolicyDenied("no"), 1),
        (VaultError("locked"), 1),
        (ApiError("unauthenticated", code="unauthenticated"), 1),
        (PuraifyError("odd"), 3),
        (KeyError("bug"), 3),
    ],
)
def test_exit_code_by_code_then_by_type(error: BaseException, exit_code: int) -> None:
    assert exit_code_for(error) == exit_code


def test_codes_are_plain_strings_on_errors() -> None:
    error = StepTimeout("too slow")
    assert error.code == ErrorCode.TIMEOUT == "timeout"
    assert type(error.code) is str and type(error.to_dict()["code"]) is str
