"""Static safety analysis: a risk score and findings, judged against a threshold.

Pure (no I/O). Rules look for: dangerous commands and arguments, shells and inline code,
deletes of system paths, plain-http and internal URLs, steps without a timeout, and secrets
written inline in a mission. ``puraify safety validate`` exits non-zero when the verdict fails.
Which commands are refused comes from ``programs``, the table the command guard enforces, so
every command the guard would refuse is a finding here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from ..redaction import KNOWN_SHAPES
from .model import Mission, MissionStep
from .programs import Rule, env_refusal, program_name, programs_run, refusal

__all__ = ["LEVELS", "Finding", "SafetyReport", "analyze"]

Severity = Literal["low", "medium", "high", "critical"]
#: ``off``: every mission passes (the runtime guards still judge every step).
Level = Literal["off", "permissive", "standard", "strict"]
_WEIGHT: dict[str, int] = {"low": 2, "medium": 8, "high": 20, "critical": 50}
_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}

#: level -> (lowest severity that fails the mission, highest total score allowed)
LEVELS: dict[str, tuple[Severity, int]] = {
    "permissive": ("critical", 90),
    "standard": ("high", 60),
    "strict": ("medium", 30),
}

_INLINE_CODE = {
    "python": "-c",
    "python3": "-c",
    "node": "-e",
    "perl": "-e",
    "ruby": "-e",
    "php": "-r",
}
#: How bad each refusal of the command guard (``programs``) is, as a finding.
_REFUSED: dict[Rule, Severity] = {
    "shell_syntax": "medium",
    "shell_command": "high",
    "privilege_escalation": "critical",
    "destructive_command": "critical",
    "loader_hijack": "high",
}
_NETWORK_FETCH = {"curl", "wget"}
_DANGEROUS_TEXT = re.compile(
    r"rm\s+-[a-z]*r[a-z]*f?\s+(/|~|\*)|:\(\)\s*\{|chmod\s+(-R\s+)?777|>\s*/dev/sd|"
    r"(curl|wget)[^|]*\|\s*(ba|z)?sh|mkfs\.|/etc/(passwd|shadow)",
    re.I,
)
# a parameter named like a credential: whole words of its name (`access_token`, `apiKey`), not
# parts of other words (`tokenizer`)
_SECRET_KEYS = re.compile(
    r"(?:^|[_\-.\s]|(?<=[a-z])(?=[A-Z]))"
    r"(?i:pass(?:word)?|passwd|secret|token|api[_-]?key|apikey|private[_-]?key|credentials?)"
    r"(?:$|[_\-.\s]|(?=[A-Z]))"
)
# values in a known credential format (high: ``redaction.KNOWN_SHAPES``, the forms every output
# is redacted of); a bearer token written out (medium: placeholders in documentation look the same)
_SECRET_VALUES = KNOWN_SHAPES
_BEARER = re.compile(r"Bearer\s+[A-Za-z0-9._~+/-]{20,}")
_SYSTEM_PREFIXES = (
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/boot",
    "/var",
    "/lib",
    "/root",
    "/home",
    "/dev",
    "/proc",
    "/sys",
    "C:\\Windows",
    "C:/Windows",
)


class _Catalog(Protocol):
    def canonical(self, step_type: str) -> str | None: ...

    def parameter_names(self, step_type: str) -> dict[str, str]:
        """Every name a step type's parameter is accepted under -> the parameter's name."""


@dataclass(frozen=True)
class Finding:
    """One risk the analysis found."""

    rule: str
    severity: Severity
    message: str
    step_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "step_id": self.step_id,
        }


@dataclass(frozen=True)
class SafetyReport:
    """Findings and the score they add up to (0-100)."""

    findings: tuple[Finding, ...]
    score: int

    def verdict(self, level: Level = "standard") -> bool:
        """True when the mission passes at ``level``."""
        if level == "off":
            return True
        worst, max_score = LEVELS[level]
        if any(_RANK[f.severity] >= _RANK[worst] for f in self.findings):
            return False
        return self.score <= max_score

    def to_dict(self, level: Level = "standard") -> dict[str, Any]:
        return {
            "score": self.score,
            "level": level,
            "passed": self.verdict(level),
            "findings": [f.to_dict() for f in self.findings],
        }


def analyze(mission: Mission, catalog: _Catalog, *, allow_shell: bool = False) -> SafetyReport:
    """Score a mission's risk; never executes anything. ``allow_shell``: the operator lets
    commands run shells (``command_allow_shell``), so a shell is a medium finding, not high."""
    findings: list[Finding] = []
    for step in mission.steps:
        canonical = catalog.canonical(step.step_type)
        kind = canonical or step.step_type
        # judged as the action reads them: `file_path` is `path`, `target` is `destination`
        names = catalog.parameter_names(canonical) if canonical else {}
        params = {names.get(k, k): v for k, v in step.parameters.items()}
        findings.extend(_step_findings(step, kind, params, allow_shell))
    score = min(100, sum(_WEIGHT[f.severity] for f in findings))
    return SafetyReport(tuple(findings), score)


def _strings(value: Any, key: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)


def _first(params: dict[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` (a parameter and its aliases) that is set."""
    return next((params[n] for n in names if params.get(n) is not None), None)


def _step_findings(
    step: MissionStep, kind: str, p: dict[str, Any], allow_shell: bool
) -> list[Finding]:
    out: list[Finding] = []

    def add(rule: str, severity: Severity, message: str) -> None:
        # a finding quotes the mission: never a credential it holds
        out.append(Finding(rule, severity, _redacted(message), step.id))

    if kind == "command":
        program = str(_first(p, "command", "program", "cmd") or "")
        raw_args = _first(p, "args", "arguments")
        args = [str(a) for a in raw_args] if isinstance(raw_args, list) else []
        env = p.get("env")
        joined = " ".join([program, *args])
        # a templated program is only known at run time, where the guard judges it
        templated = "{{" in program or "{%" in program
        for refused in (
            None if templated else refusal([program, *args]),
            env_refusal(str(k) for k in env) if isinstance(env, dict) else None,
        ):
            if refused is not None:
                severity = _REFUSED[refused.rule]
                if allow_shell and refused.rule == "shell_command":
                    severity = "medium"
                add(refused.rule, severity, refused.message)
        # what the command runs, wrappers (`env`, `timeout`, `xargs`, ...) included
        for inner in [] if templated else programs_run([program, *args]):
            name, inner_args = program_name(inner[0]), inner[1:]
            if name == "rm" and any(a.startswith("-") and "r" in a for a in inner_args):
                add("recursive_delete", "medium", "deletes recursively")
            if _INLINE_CODE.get(name) in inner_args:
                add("inline_code", "medium", f"runs inline {name} code")
            elif name in _INLINE_CODE and p.get("stdin") and not inner_args:
                add("inline_code", "medium", f"runs {name} code given on stdin")
            if name in _NETWORK_FETCH:
                add(
                    "network_fetch",
                    "low",
                    f"{name} fetches from the network outside the SSRF guard",
                )
        if _DANGEROUS_TEXT.search(joined):
            add("dangerous_pattern", "critical", f"dangerous command text: {joined[:120]!r}")
    if kind == "delete_file":
        path = str(p.get("path", ""))
        if (
            path.startswith(_SYSTEM_PREFIXES)
            or path.strip() in ("/", "~", "..", "*")
            or ".." in path.split("/")
        ):
            add("system_path_delete", "critical", f"deletes {path!r}, outside the workspace")
        if p.get("recursive"):
            add("recursive_delete", "medium", f"deletes {path!r} recursively")
    if kind in ("create_file", "edit_file", "copy_file", "move_file"):
        for key in ("path", "destination", "dest"):
            value = p.get(key)
            if isinstance(value, str) and (
                value.startswith(_SYSTEM_PREFIXES) or ".." in value.split("/")
            ):
                add("system_path_write", "high", f"writes {value!r}, outside the workspace")
    if kind in ("http", "webhook.call"):
        url = _judged_url(str(p.get("url", "")))
        try:
            parts = urlsplit(url) if url else None
            host = (parts.hostname or "").rstrip(".") if parts else ""
        except ValueError:
            parts = None
            add("invalid_url", "medium", "the URL cannot be parsed; the request would fail")
        if parts is not None:
            if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
                add("plain_http", "medium", f"plain http to {host or url!r}; use https")
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                ip = None
            if ip is not None and not ip.is_global and not ip.is_loopback:
                add("internal_address", "high", f"targets the internal address {host}")
            if host in ("169.254.169.254", "metadata.google.internal"):
                add("metadata_endpoint", "critical", "targets a cloud metadata endpoint")
    if (
        kind in ("command", "http", "webhook.call")
        and step.timeout_seconds is None
        and not p.get("timeout")
    ):
        add("no_timeout", "low", "no timeout_seconds; the 300 s default applies")
    advice = "read it from the environment ({{ env.NAME }}) or the vault ({{ secrets.NAME }})"
    for key, value in _strings(p):
        if "{{" in value:
            continue
        if _SECRET_VALUES.search(value) or (_SECRET_KEYS.search(key) and len(value) >= 8):
            add(
                "inline_secret",
                "high",
                f"parameter {key!r} holds what looks like a secret; {advice}",
            )
            break
        if _BEARER.search(value):
            add("inline_secret", "medium", f"parameter {key!r} holds a bearer token; {advice}")
            break
    return out


def _judged_url(url: str) -> str:
    """The part of a URL the analysis can judge: all of it, or, when templates fill in the
    rest, the scheme and host before them ("" when a template is the host itself)."""
    cut = min((i for i in (url.find("{{"), url.find("{%")) if i >= 0), default=-1)
    if cut < 0:
        return url
    head = url[:cut]
    return head if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+[/?#]", head) else ""


def _redacted(message: str) -> str:
    return _BEARER.sub("Bearer ***", _SECRET_VALUES.sub("***", message))
