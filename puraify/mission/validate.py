"""Validation before anything runs: structure, step types, parameters and template references.

Pure: the action catalogue and the template engine are passed in as small ports
(``StepCatalog``, ``ReferenceReader``) so this module imports no I/O and no action code.
What validation learns is kept: a valid mission comes back compiled (``mission.compile``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from ..errors import Issue, PuraifyError, ValidationError
from .compile import (
    CompiledMission,
    CompiledStep,
    Template,
    TemplateSlot,
    effective_step_timeout,
    is_template,
    retry_policy,
    roots_of,
    template_slots,
)
from .loader import LoadedMission
from .model import Mission, MissionStep
from .plan import cycle_path, topological_order

__all__ = [
    "ReferenceReader",
    "StepCatalog",
    "ValidatedMission",
    "validate_mission",
]


_NOTHING: Mapping[str, Any] = MappingProxyType({})
_NO_FIELDS: frozenset[str] = frozenset()

#: The RustChain mission spec's 51 step types (folded: lower case, no underscores), so that
#: one this engine does not run is named as such instead of drawing a misleading suggestion.
_SPEC_STEP_TYPES = frozenset(
    name.replace("_", "")
    for name in [
        "create_file",
        "edit_file",
        "delete_file",
        "copy_file",
        "move_file",
        "read_file",
        "list_directory",
        "file_search",
        "parse_json",
        "parse_yaml",
        "parse_xml",
        "validate_schema",
        "csv_process",
        "compile_code",
        "run_tests",
        "format_code",
        "lint_code",
        "extract_functions",
        "generate_docs",
        "git_commit",
        "git_branch",
        "git_merge",
        "git_status",
        "git_diff",
        "process_start",
        "process_kill",
        "monitor_resources",
        "service_health",
        "compress",
        "sql_query",
        "redis_set",
        "redis_get",
        "db_backup",
        "db_migrate",
        "websocket_connect",
        "ftp_upload",
        "ftp_download",
        "ssh_execute",
        "ping_host",
        "generate_embedding",
        "similarity_search",
        "model_inference",
        "noop",
        "command",
        "http",
        "llm",
        "tool",
        "agent",
        "chain",
        "rag_query",
        "rag_add",
    ]
)


def _folded(step_type: str) -> str:
    return step_type.lower().replace("_", "")


class StepCatalog(Protocol):
    """What validation needs from the action registry."""

    def canonical(self, step_type: str) -> str | None:
        """The canonical action name for a step type or alias, or None if unknown."""

    def names(self) -> Iterable[str]:
        """Every step type and alias, for suggestions."""

    def compile_parameters(
        self, step_type: str, parameters: Mapping[str, Any], templated: frozenset[str]
    ) -> tuple[list[tuple[str, str, str, str]], object | None]:
        """Problems as ``(severity, code, field, message)``, and the parsed parameters when
        none is templated and they are valid (else None). ``templated`` fields are not
        type-checked (their value is only known at run time)."""


class ReferenceReader(Protocol):
    """What validation needs from the template engine."""

    @property
    def builtin_names(self) -> frozenset[str]:
        """Names every template may read without declaring them."""

    def compile(self, text: str) -> Template:
        """The template compiled, with the outside names it reads; raises on syntax errors."""


@dataclass(frozen=True)
class ValidatedMission:
    """A mission that passed validation, with its warnings and its compiled form."""

    mission: Mission
    warnings: tuple[Issue, ...]
    file: str | None
    compiled: CompiledMission


def validate_mission(
    loaded: LoadedMission,
    catalog: StepCatalog,
    reader: ReferenceReader,
    *,
    context_names: Iterable[str] = (),
    strict: bool = False,
    max_steps: int | None = None,
    default_step_timeout: float | None = None,
) -> ValidatedMission:
    """Check everything that can be checked without running; raise ``ValidationError``.

    ``context_names`` are variables the caller will supply (``--var``, request context); they
    may be read as ``{{ name }}`` or ``{{ context.name }}``. ``default_step_timeout`` is the
    engine's, for steps and missions that set none.
    """
    mission = loaded.mission
    issues: list[Issue] = list(loaded.warnings)
    severity_unknown = "error" if strict else "warning"
    index_of: dict[int, int] = {}

    def add(code: str, message: str, step: MissionStep | None, *path: str | int, **kw: Any) -> None:
        if step is not None and not index_of:
            index_of.update((id(s), i) for i, s in enumerate(mission.steps))
        index = index_of.get(id(step)) if step is not None else None
        loc = ("steps", index, *path) if index is not None else path
        line, col = loaded.position(*loc) if loc else (None, None)
        issues.append(
            Issue(code, message, step_id=step.id if step else None, line=line, column=col, **kw)
        )

    if max_steps is not None and len(mission.steps) > max_steps:
        add(
            "too_many_steps",
            f"mission has {len(mission.steps)} steps; the limit is {max_steps}",
            None,
        )
        raise ValidationError(issues, file=loaded.file)
    if not mission.steps:
        add("no_steps", "a mission needs at least one step", None, "steps")

    ids: dict[str, MissionStep] = {}
    for step in mission.steps:
        if step.id in ids:
            add("duplicate_step_id", f"step id {step.id!r} is used twice", step, "id", field="id")
        ids.setdefault(step.id, step)

    for step in mission.steps:
        for dep in step.depends_on:
            if dep == step.id:
                add("dependency_cycle", f"step {step.id!r} depends on itself", step, "depends_on")
            elif dep not in ids:
                guess = difflib.get_close_matches(dep, list(ids), n=1)
                hint = f"did you mean {guess[0]!r}?" if guess else None
                add(
                    "missing_dependency",
                    f"step {step.id!r} depends on {dep!r}, which does not exist"
                    + (f"; {hint}" if hint else ""),
                    step,
                    "depends_on",
                    field="depends_on",
                    hint=hint,
                )
    edges = {s.id: [d for d in s.depends_on if d in ids and d != s.id] for s in ids.values()}
    cycle = cycle_path(edges)
    if cycle:
        add(
            "dependency_cycle",
            "dependency cycle: " + " -> ".join(cycle),
            ids[cycle[0]],
            "depends_on",
            field="depends_on",
            extra={"cycle": cycle},
        )

    config = mission.config
    shared_retry = retry_policy(None, config)  # one object for every step without its own
    compiled: list[CompiledStep] = []
    references = _References(mission, ids, reader.builtin_names, context_names, add)
    known_names: list[str] | None = None
    for step in mission.steps:
        templated, slots, when, errors = _templates(step, reader)
        for fld, error in errors:
            add(
                "template_error",
                f"step {step.id!r}: {fld}: {error.message}",
                step,
                *fld.split(".")[:2],
                field=fld,
            )
        for slot in slots:
            references.check(step, slot.field, slot.template)
        if when is not None:
            references.check(step, "when", when)
        action = catalog.canonical(step.step_type)
        if action is None:
            if _folded(step.step_type) in _SPEC_STEP_TYPES:
                # a name of the mission spec's own: a "did you mean" would only mislead
                hint = None
                message = (
                    f"step type {step.step_type!r} is one of the mission spec's that this engine "
                    "does not run; `puraify actions list` shows the ones it does"
                )
            else:
                if known_names is None:
                    known_names = sorted(set(catalog.names()))
                guess = difflib.get_close_matches(step.step_type, known_names, n=1, cutoff=0.6)
                hint = f"did you mean {guess[0]!r}?" if guess else None
                message = f"unknown step type {step.step_type!r}" + (f"; {hint}" if hint else "")
            add(
                "unknown_step_type",
                message,
                step,
                "step_type",
                field="step_type",
                hint=hint,
            )
            continue
        problems, params = catalog.compile_parameters(
            step.step_type, step.parameters, frozenset(templated) if templated else _NO_FIELDS
        )
        for sev, code, fld, message in problems:
            add(
                code,
                f"step {step.id!r}: parameters.{fld}: {message}",
                step,
                "parameters",
                fld,
                severity=severity_unknown if sev == "warning" else _param_severity(step),
                field=f"parameters.{fld}",
            )
        compiled.append(
            CompiledStep(  # positional: cheaper, and this runs once per step
                step,
                action,
                params,
                templated or _NOTHING,
                roots_of([s.template for s in slots]) if slots else _NO_FIELDS,
                when,
                step.retry or shared_retry,
                effective_step_timeout(step, config, default_step_timeout),
            )
        )

    if any(i.severity == "error" for i in issues):
        raise ValidationError(issues, file=loaded.file)
    return ValidatedMission(
        mission, tuple(issues), loaded.file, CompiledMission(mission, tuple(compiled))
    )


def _templates(
    step: MissionStep, reader: ReferenceReader
) -> tuple[
    Mapping[str, Any], Sequence[TemplateSlot], Template | None, Sequence[tuple[str, PuraifyError]]
]:
    """A step's templates, compiled: its templated parameters (values with ``TemplateSlot``s),
    every slot, its ``when``, and the templates that did not compile."""
    if step.when is None and not any(
        is_template(v) if isinstance(v, str) else isinstance(v, dict | list)
        for v in step.parameters.values()
    ):
        return _NOTHING, (), None, ()  # most steps: nothing to build
    errors: list[tuple[str, PuraifyError]] = []
    templated: dict[str, Any] = {}
    slots: list[TemplateSlot] = []
    for key, value in step.parameters.items():
        if isinstance(value, str) and not is_template(value):
            continue
        slotted, has = template_slots(value, f"parameters.{key}", reader.compile, slots, errors)
        if has:
            templated[key] = slotted
    when = None
    if step.when is not None:
        try:
            when = reader.compile(step.when)
        except PuraifyError as exc:
            errors.append(("when", exc))
    return templated, slots, when, errors


def _param_severity(step: MissionStep) -> str:
    # A step that tolerates its own failure (continue_on_error) gets its parameter errors at
    # run time, as a failed step, instead of blocking the whole mission (RustChain's
    # error-handling missions rely on this).
    return "warning" if step.continue_on_error else "error"


class _References:
    """Checks what templates read: every name must exist, and a step's output must come from
    a step upstream of the reader."""

    def __init__(
        self,
        mission: Mission,
        ids: Mapping[str, MissionStep],
        builtins: frozenset[str],
        context_names: Iterable[str],
        add: Any,
    ) -> None:
        self.ids = ids
        self.builtins = builtins
        self.variables = set(mission.variables) | set(context_names)
        self.add = add
        self.upstream: _Upstream | None = None

    def check(self, step: MissionStep, fld: str, template: Template) -> None:
        ids, add = self.ids, self.add
        for ref in template.references:
            target: str | None = None
            if ref[0] == "steps":
                if len(ref) < 2:
                    continue
                target = ref[1]
                if target not in ids:
                    add(
                        "invalid_reference",
                        f"step {step.id!r}: {fld} reads steps.{target}, which does not exist",
                        step,
                        "parameters",
                        field=fld,
                    )
                    continue
            elif ref[0] in self.builtins:
                continue
            elif ref[0] in ids:
                target = ref[0]
            elif ref[0] in self.variables:
                continue
            else:
                pool = sorted(self.variables | set(ids) | self.builtins)
                guess = difflib.get_close_matches(ref[0], pool, n=1)
                hint = f"did you mean {guess[0]!r}?" if guess else None
                add(
                    "unknown_reference",
                    f"step {step.id!r}: {fld} reads {'.'.join(ref)!r}, which is neither a "
                    "step, a variable nor a built-in name" + (f"; {hint}" if hint else ""),
                    step,
                    "parameters",
                    field=fld,
                    hint=hint,
                )
                continue
            if target == step.id:
                add(
                    "invalid_reference",
                    f"step {step.id!r}: {fld} reads its own output",
                    step,
                    "parameters",
                    field=fld,
                )
                continue
            if target in step.depends_on:
                continue  # the common case, known without the ancestor sets
            if self.upstream is None:
                self.upstream = _Upstream(ids)
            if not self.upstream.reads(step.id, target):
                add(
                    "invalid_reference",
                    f"step {step.id!r}: {fld} reads the output of {target!r}, which is not "
                    f"upstream of it; add {target!r} to depends_on",
                    step,
                    "parameters",
                    field=fld,
                )


class _Upstream:
    """Which steps are (transitively) upstream of which.

    Each step's ancestors are an int used as a bitset (bit ``i``: the ``i``-th step), built once
    in topological order from its dependencies' sets: one pass over the steps, and a check is a
    shift and a mask. (A walk of the ancestors per reading step is quadratic on long chains.)
    """

    def __init__(self, ids: Mapping[str, MissionStep]) -> None:
        self.position = {step_id: i for i, step_id in enumerate(ids)}
        deps = [
            [self.position[d] for d in dict.fromkeys(step.depends_on) if d in ids and d != sid]
            for sid, step in ids.items()
        ]
        self.ancestors = [0] * len(deps)
        ordered = topological_order(deps)
        for i in ordered:
            bits = 0
            for d in deps[i]:
                bits |= self.ancestors[d] | (1 << d)
            self.ancestors[i] = bits
        if len(ordered) < len(deps):  # steps on or after a cycle (already an error): walk
            for i in set(range(len(deps))).difference(ordered):
                bits, todo = 0, list(deps[i])
                while todo:
                    d = todo.pop()
                    if not bits >> d & 1:
                        bits |= 1 << d
                        todo.extend(deps[d])
                self.ancestors[i] = bits

    def reads(self, step_id: str, target: str) -> bool:
        """Whether ``target`` is upstream of ``step_id``."""
        return bool(self.ancestors[self.position[step_id]] >> self.position[target] & 1)
