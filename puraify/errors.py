"""Every error puraify raises, with a stable ``code`` a caller can branch on.

The tree (one root, one base per layer), with each class's HTTP status::

    PuraifyError                     500  the root; ``internal_error``
    ├── MissionError                 422  a mission document could not be used
    │   ├── LoadError                422  not well-formed, or over a size, depth or safety limit
    │   ├── ValidationError          422  one or more ``Issue`` s found before anything ran
    │   └── SafetyRefused            422  the safety analysis failed the mission; nothing ran
    ├── TemplateError                422  a template could not be rendered
    │   └── TemplateSecurityError    422  a template left the sandbox or went over a limit
    ├── ActionError                  502  a step's action failed (carries ``retryable``)
    │   ├── GuardError               403  a safety guard refused (SSRF, path jail, commands)
    │   └── StepTimeout              504  a step ran past its timeout
    ├── VaultError                   500  credentials could not be stored, found or decrypted
    ├── PolicyDenied                 403  Engine Control said no
    ├── ControlError                 400  Engine Control could not make a change it was asked
    └── StoreError                   500  the run store failed

The codes each class carries are listed, with their status, CLI exit code and what to do, in
docs/errors.md (generated from ``puraify.codes``). A registered code's status wins over its
class's: ``StoreError(code="run_not_found")`` is a 404. A class's status is for codes the
registry does not know, such as those of third-party actions; a subclass that declares none
inherits its parent's, as Starlette looks exception handlers up along the MRO.

Errors carry context (``run_id``, ``step_id``, ``action``, ``file``, ``line``, ``column``,
``field``) the way httpx errors carry ``.request``. Messages say what to do; they never
contain a secret (values are redacted before they reach an error).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from .codes import ErrorCode
from .redaction import OPERATOR

__all__ = [
    "ActionError",
    "ControlError",
    "GuardError",
    "Issue",
    "LoadError",
    "MissionError",
    "PolicyDenied",
    "PuraifyError",
    "StepTimeout",
    "StoreError",
    "TemplateError",
    "TemplateSecurityError",
    "ValidationError",
    "VaultError",
    "failure_envelope",
]


class PuraifyError(Exception):
    """Root of every puraify error: a stable ``code``, a sentence, and where it happened."""

    default_code: ClassVar[str] = ErrorCode.INTERNAL_ERROR
    http_status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
        action: str | None = None,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # a plain str, so that serializers which refuse str subclasses (YAML) take it
        self.code = str(code or self.default_code)
        self.run_id = run_id
        self.step_id = step_id
        self.action = action
        self.file = file
        self.line = line
        self.column = column
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        # crosses process boundaries (the action sandbox) with every attribute, whatever the
        # subclass's constructor takes
        return (_restore, (type(self), self.message, dict(self.__dict__)))

    def to_dict(self) -> dict[str, Any]:
        """The structured form shown to users: ``code``, ``message`` and any known location."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for key in ("run_id", "step_id", "action", "file", "line", "column", "field"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def __str__(self) -> str:
        where = []
        if self.file:
            loc = self.file
            if self.line is not None:
                loc += f":{self.line}"
                if self.column is not None:
                    loc += f":{self.column}"
            where.append(loc)
        if self.step_id:
            where.append(f"step {self.step_id!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.message} [{self.code}]"


def _restore(cls: type[PuraifyError], message: str, state: dict[str, Any]) -> PuraifyError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class MissionError(PuraifyError):
    """A mission document could not be loaded or validated."""

    default_code = ErrorCode.INVALID_MISSION
    http_status = HTTPStatus.UNPROCESSABLE_ENTITY


class LoadError(MissionError):
    """The document is not well-formed, or breaks a size, depth or safety limit."""

    default_code = ErrorCode.INVALID_MISSION


@dataclass(frozen=True)
class Issue:
    """One finding of validation: an error (blocks the run) or a warning."""

    code: str
    message: str
    severity: str = "error"
    step_id: str | None = None
    field: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "severity": self.severity,
        }
        for key in ("step_id", "field", "line", "column", "hint"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out


class SafetyRefused(MissionError):
    """The static safety analysis failed the mission at the level in force; nothing ran.
    ``report``: its score, level and findings, as ``SafetyReport.to_dict`` gives them."""

    default_code = ErrorCode.SAFETY_REFUSED

    def __init__(self, report: Mapping[str, Any], *, file: str | None = None) -> None:
        findings = report.get("findings", [])
        ranks = ("low", "medium", "high", "critical")
        worst = max(
            findings,
            key=lambda f: ranks.index(f["severity"]) if f.get("severity") in ranks else -1,
            default=None,
        )
        message = (
            f"the safety analysis failed this mission at level {report.get('level')!r} "
            f"(score {report.get('score')}, {len(findings)} finding(s))"
        )
        if worst is not None:
            message += f"; first: step {worst.get('step_id')!r}: {worst.get('message')}"
        super().__init__(message, file=file)
        self.report = dict(report)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["safety"] = self.report
        return out


class ValidationError(MissionError):
    """Validation found errors; ``issues`` lists every one (warnings included)."""

    default_code = ErrorCode.VALIDATION_FAILED

    def __init__(self, issues: Sequence[Issue], *, file: str | None = None) -> None:
        errors = [i for i in issues if i.severity == "error"]
        first = errors[0] if errors else (issues[0] if issues else None)
        summary = f"{len(errors)} validation error(s)"
        if first is not None:
            summary += f"; first: {first.message}"
        super().__init__(
            summary,
            code=(
                first.code
                if first is not None and len(errors) == 1
                else ErrorCode.VALIDATION_FAILED
            ),
            file=file,
            step_id=first.step_id if first else None,
            line=first.line if first else None,
            column=first.column if first else None,
            field=first.field if first else None,
        )
        self.issues = list(issues)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["issues"] = [i.to_dict() for i in self.issues]
        return out


class TemplateError(PuraifyError):
    """A template could not be rendered (syntax, missing reference, wrong type)."""

    default_code = ErrorCode.TEMPLATE_ERROR
    http_status = HTTPStatus.UNPROCESSABLE_ENTITY


class TemplateSecurityError(TemplateError):
    """A template tried to leave the sandbox, or exceeded its size or time budget."""

    default_code = ErrorCode.TEMPLATE_SECURITY_ERROR


class ActionError(PuraifyError):
    """A step's action failed; ``retryable`` says whether trying again may help.

    ``output``: what the action produced before it failed (a command's exit code and output, an
    HTTP error response), kept as the failed step's output so later steps can read it."""

    default_code = ErrorCode.ACTION_FAILED
    http_status = HTTPStatus.BAD_GATEWAY

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
        output: Mapping[str, Any] | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, code=code, **context)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.details: dict[str, Any] = dict(details or {})
        self.output: dict[str, Any] | None = dict(output) if output is not None else None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["retryable"] = self.retryable
        if self.status is not None:
            out["status"] = self.status
        if self.details:
            out["details"] = self.details
        return out


class GuardError(ActionError):
    """A safety guard refused the operation (SSRF, path jail, command policy, archives)."""

    default_code = ErrorCode.GUARD_REFUSED
    http_status = HTTPStatus.FORBIDDEN


class StepTimeout(ActionError):
    """A step ran past its timeout and was stopped."""

    default_code = ErrorCode.TIMEOUT
    http_status = HTTPStatus.GATEWAY_TIMEOUT

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message, code=ErrorCode.TIMEOUT, retryable=True, **context)


class VaultError(PuraifyError):
    """Credentials could not be stored, found or decrypted."""

    default_code = ErrorCode.VAULT_ERROR


class PolicyDenied(PuraifyError):
    """Engine Control denied the action (permission, platform status or feature flag)."""

    default_code = ErrorCode.POLICY_DENIED
    http_status = HTTPStatus.FORBIDDEN


class ControlError(PuraifyError):
    """Engine Control could not make a change it was asked (an unknown or existing engine,
    permissions or a status it cannot take)."""

    default_code = ErrorCode.INVALID_REQUEST
    http_status = HTTPStatus.BAD_REQUEST


class StoreError(PuraifyError):
    """The run store could not read or write."""

    default_code = ErrorCode.STORE_ERROR


def failure_envelope(
    error: BaseException, *, internal_reason: str = "internal error"
) -> dict[str, Any]:
    """The spec's failure envelope, the same at every edge: ``{"status": "fail", "reason",
    "error": {"code", "message", "retryable", ...}}``. An error that is not a ``PuraifyError``
    (a bug) shows only ``internal_error`` and ``internal_reason``, never its text."""
    if isinstance(error, PuraifyError):
        detail = OPERATOR.value(error.to_dict())
        reason = OPERATOR.text(error.message)
    else:
        detail = {"code": "internal_error", "message": "internal error"}
        reason = internal_reason
    detail.setdefault("retryable", False)
    return {"status": "fail", "reason": reason, "error": detail}
