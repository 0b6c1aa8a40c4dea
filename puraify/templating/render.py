"""Sandboxed rendering of ``{{ ... }}`` templates in step parameters.

Rules (DESIGN.md §3, RELIABILITY.md SEC-02):
- Jinja2's ``ImmutableSandboxedEnvironment``; never ``eval``. Unsafe attribute access, calls and
  mutation raise ``TemplateSecurityError`` (``template_security_error``).
- A value that is exactly one ``{{ expr }}`` keeps its type (a list stays a list). Inside a
  longer text, values are written in JSON's spelling: ``true``, ``false``, ``null``, and lists
  and mappings as JSON (what every platform on the other end parses), never Python's.
- Output is capped in bytes, and rendering in time: the deadline is checked on every call,
  attribute or item lookup and output chunk, and ``*`` / ``**`` refuse results past the cap.
  A width or precision past the cap is refused before anything is allocated, wherever it is
  given: ``%`` and the ``format`` filter, ``str.format``, ``center``/``ljust``/``rjust``/
  ``zfill``/``expandtabs`` and the ``center``/``indent`` filters; ``replace`` and ``join``
  whose result would pass the cap are refused before they build it; ``slice`` takes at most
  ``MAX_SLICES``; ``lipsum`` is not available. Every ``{% for %}`` checks the deadline on each
  item, so nested loops that call nothing are bounded in time too; recursion past Python's
  limit is ``template_limit``.
- Rendering is single pass: data coming from a step's output is inserted as a value and never
  parsed as a template again.

Templates are compiled once (``TemplateEngine.compile``, at validation) into a
``CompiledTemplate`` that knows what it reads. A whole-value template that is one dotted name
(``{{ fetch.output.items }}``, most templates) renders through the sandbox's own attribute
lookup, exactly as the code Jinja2 would generate for it does, without generating that code
(~0.4 ms per distinct template); every other template renders through Jinja2.
"""

from __future__ import annotations

import json
import re
import string
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, meta, nodes
from jinja2.exceptions import FilterArgumentError, SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateError, TemplateSecurityError
from ..mission.compile import is_template as contains_template
from .scope import BUILTIN_NAMES

__all__ = ["CompiledTemplate", "TemplateEngine", "contains_template"]

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)
_DOTTED = re.compile(
    r"\s*\{\{(\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*)\}\}\s*", re.ASCII
)
# Names Jinja2 parses as constants or operators, and `self` (the template reference): a path
# starting with one of these goes through Jinja2.
_NOT_A_ROOT = frozenset(
    {"true", "false", "none", "True", "False", "None", "not", "and", "or", "in", "is", "if"}
    | {"else", "self"}
)
_MISSING = object()
_deadline: ContextVar[float] = ContextVar("puraify_template_deadline", default=float("inf"))


class TemplateSource(Protocol):
    """What ``TemplateEngine.render`` takes: a compiled template, or anything with its source."""

    @property
    def source(self) -> str: ...


class CompiledTemplate(NamedTuple):
    """A parsed template: its text, the outside names it reads, and how it renders.

    (A named tuple: immutable, and cheap to build for each template of a long mission.)
    """

    source: str
    #: Attribute paths of the outside names read: ``("steps", "a", "output")``.
    references: tuple[tuple[str, ...], ...]
    #: The first name of each reference: what the template's scope must hold.
    roots: frozenset[str]
    #: The expression of a whole-value template (``{{ expr }}``), rendered with its own type.
    expression: str | None = None
    #: A whole-value template that is one dotted name, split at the dots.
    path: tuple[str, ...] | None = None


MAX_SLICES = 10_000
_MAX_INDENT = 64
_MAX_INT_BITS = 64_000
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_FORMAT_METHODS = frozenset({"format", "format_map"})
# %[(key)][flags][width][.precision]: the width and the precision, `*` when an argument gives it
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _ints(values: Iterable[Any]) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+", "-", "//", "/"})

    def __init__(self, max_output: int) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_json_spelling,
        )
        self.max_output = max_output
        self.globals.pop("lipsum", None)  # up to 100,000 paragraphs of filler text
        center, indent, slice_ = (self.filters[n] for n in ("center", "indent", "slice"))

        def bounded_center(value: Any, width: int = 80) -> Any:
            self._check_widths(_ints([width]))
            return center(value, width)

        def bounded_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
            self._check_widths(_ints([width]))
            return indent(value, width, *args, **kwargs)

        def bounded_format(value: Any, *args: Any, **kwargs: Any) -> Any:
            if args and kwargs:
                raise FilterArgumentError("format takes positional or keyword arguments, not both")
            return self._percent(value, args or kwargs)

        def bounded_slice(value: Any, slices: int, *args: Any) -> Any:
            if isinstance(slices, int) and slices > MAX_SLICES:
                raise TemplateSecurityError(
                    f"slice takes at most {MAX_SLICES} slices", code="template_limit"
                )
            return slice_(value, slices, *args)

        replace, join, tojson = (self.filters[n] for n in ("replace", "join", "tojson"))

        def bounded_tojson(ctx: Any, value: Any, indent: Any = None) -> Any:
            if isinstance(indent, int) and indent > _MAX_INDENT:
                raise TemplateSecurityError(
                    f"tojson indents at most {_MAX_INDENT} spaces", code="template_limit"
                )
            return tojson(ctx, value, indent)

        bounded_tojson.jinja_pass_arg = tojson.jinja_pass_arg  # type: ignore[attr-defined]

        def bounded_replace(ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
            self._check_replace(value, old, new)
            return replace(ctx, value, old, new, count)

        bounded_replace.jinja_pass_arg = replace.jinja_pass_arg  # type: ignore[attr-defined]

        def bounded_join(context: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
            if isinstance(d, str) and d and attribute is None:
                value = list(value)
                self._check_join(d, value)
            return join(context, value, d, attribute)

        bounded_join.jinja_pass_arg = join.jinja_pass_arg  # type: ignore[attr-defined]
        self.filters.update(
            center=bounded_center,
            indent=bounded_indent,
            format=bounded_format,
            slice=bounded_slice,
            replace=bounded_replace,
            join=bounded_join,
            tojson=bounded_tojson,
        )
        self.globals["_puraify_iter"] = self._ticking

    def _ticking(self, iterable: Any) -> Any:
        """What every ``{% for %}`` iterates: the same items, the deadline checked on each."""
        for item in iterable:
            self._tick()
            yield item

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name("_puraify_iter", "load"), [loop.iter], [], None, None)
        return tree

    def _check_size(self, size: int) -> None:
        if size > self.max_output:
            raise TemplateSecurityError(
                f"template output would exceed {self.max_output} bytes", code="template_limit"
            )

    def _check_join(self, separator: str, items: list[Any] | tuple[Any, ...]) -> None:
        """Refuse a join whose result would pass the output cap, before it is built."""
        self._check_size((len(items) - 1) * len(separator) + sum(len(str(i)) for i in items))

    def _check_replace(self, text: Any, old: Any, new: Any) -> None:
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            grows = len(new) - len(old)
            if grows > 0:
                hits = text.count(old) if old else len(text) + 1
                self._check_size(len(text) + hits * grows)

    def _check_widths(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            if number > self.max_output:
                raise TemplateSecurityError(
                    f"a width or precision of {number} would pass the {self.max_output}-byte "
                    "output limit",
                    code="template_limit",
                )

    def _percent(self, text: Any, right: Any) -> Any:
        """``text % right``, with every width and precision checked before it allocates."""
        if isinstance(text, str):
            star = False
            for match in _PERCENT_SPEC.finditer(text):
                for group in match.groups():
                    if group == "*":
                        star = True
                    elif group:
                        self._check_widths([int(group)])
            if star:
                self._check_widths(_ints(right if isinstance(right, tuple) else (right,)))
        return text % right

    def _check_format(self, text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            specs = [spec for _, _, spec, _ in string.Formatter().parse(text) if spec]
        except ValueError:
            return  # str.format raises its own error for it
        for spec in specs:
            self._check_widths(int(d) for d in _DIGITS.findall(spec))
            if "{" in spec:  # a width from the arguments: `{:{w}}`
                values = [*args, *kwargs.values()]
                if args and isinstance(args[0], Mapping):
                    values += list(args[0].values())
                self._check_widths(_ints(values))

    def _tick(self) -> None:
        if time.monotonic() > _deadline.get():
            raise TemplateSecurityError("template took too long to render", code="template_limit")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        for number in (left, right):  # arithmetic on huge integers holds the loop for seconds
            if isinstance(number, int) and number.bit_length() > _MAX_INT_BITS:
                raise TemplateSecurityError(
                    f"a number of more than {_MAX_INT_BITS} bits is too large for a template",
                    code="template_limit",
                )
        if operator == "+":
            return left + right
        if operator == "-":
            return left - right
        if operator == "/":
            return left / right
        if operator == "//":
            return left // right
        if operator == "%":
            return self._percent(left, right)
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if abs(left) > 1 and left.bit_length() * right > 64_000:
                    raise TemplateSecurityError("number too large", code="template_limit")
            return left**right
        if isinstance(left, int) and isinstance(right, str | list | tuple | bytes):
            left, right = right, left
        if isinstance(left, str | list | tuple | bytes) and isinstance(right, int):
            if len(left) * right > self.max_output:
                raise TemplateSecurityError(
                    f"template output would exceed {self.max_output} bytes", code="template_limit"
                )
        return left * right

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._tick()
        # Data first: `{{ fetch.output.items }}` means the key "items", not dict.items.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._tick()
        return super().getitem(obj, argument)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            name = getattr(target, "__name__", "")
            if name in _WIDTH_METHODS:
                self._check_widths(_ints([*args, *kwargs.values()]))
            elif name in _FORMAT_METHODS:
                self._check_format(owner, args, kwargs)
            elif name == "replace" and len(args) >= 2:
                self._check_replace(owner, args[0], args[1])
            elif name == "join" and args:
                if isinstance(args[0], list | tuple):
                    self._check_join(owner, args[0])
        return super().call(__context, __obj, *args, **kwargs)


class TemplateEngine:
    """Renders step parameters against a scope; also lists the references a template makes."""

    def __init__(self, *, max_output_bytes: int = 1024 * 1024, max_render_seconds: float = 1.0):
        self.max_output_bytes = max_output_bytes
        self.max_render_seconds = max_render_seconds
        self.env = _Sandbox(max_output_bytes)
        self._template = lru_cache(maxsize=4096)(self._compile_template)
        self._expression = lru_cache(maxsize=4096)(self._compile_expression)
        self._parsed = lru_cache(maxsize=4096)(self._parse)

    @property
    def builtin_names(self) -> frozenset[str]:
        """Names every template may read without declaring them (DESIGN.md §3)."""
        return BUILTIN_NAMES

    # -- compile -----------------------------------------------------------------------------

    def compile(self, text: str) -> CompiledTemplate:
        """Parse ``text`` once: what it reads and how it renders (``TemplateError`` on a syntax
        error). Identical texts that Jinja2 must parse share one result."""
        dotted = _DOTTED.fullmatch(text)
        if dotted is not None:
            names = tuple(dotted.group(2).split("."))
            if names[0] not in _NOT_A_ROOT:
                roots = frozenset((names[0],))
                return CompiledTemplate(text, (names,), roots, dotted.group(1), names)
        return self._parsed(text)

    def _parse(self, text: str) -> CompiledTemplate:
        whole = _WHOLE.match(text)
        expr = whole.group("expr") if whole is not None else None
        refs = self._references(text if expr is None else "{{" + expr + "}}")
        return CompiledTemplate(text, refs, frozenset(ref[0] for ref in refs), expr)

    def _compile_template(self, text: str) -> Any:
        try:
            return self.env.from_string(text)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}", line=exc.lineno) from None

    def _compile_expression(self, expr: str) -> Callable[..., Any]:
        try:
            return self.env.compile_expression(expr, undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}") from None

    # -- render ------------------------------------------------------------------------------

    def render_value(self, value: Any, scope: Mapping[str, Any], *, field: str = "") -> Any:
        """Render every template in ``value`` (strings inside dicts and lists too)."""
        if isinstance(value, str):
            if not contains_template(value):
                return value
            return self.render_string(value, scope, field=field)
        if isinstance(value, dict):
            return {
                k: self.render_value(v, scope, field=f"{field}.{k}" if field else str(k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.render_value(v, scope, field=f"{field}[{i}]") for i, v in enumerate(value)]
        return value

    def render_string(self, text: str, scope: Mapping[str, Any], *, field: str = "") -> Any:
        """Render one string; a whole-value ``{{ expr }}`` returns the expression's own type."""
        try:
            template = self.compile(text)
        except TemplateError as exc:
            if exc.field is None:
                exc.field = field or None
            raise
        return self.render(template, scope, field=field)

    def render(self, template: TemplateSource, scope: Mapping[str, Any], *, field: str = "") -> Any:
        """Render a compiled template against ``scope`` (the names it reads, at least)."""
        if not isinstance(template, CompiledTemplate):
            template = self.compile(template.source)
        token = _deadline.set(time.monotonic() + self.max_render_seconds)
        try:
            if template.path is not None:
                result = self._lookup(template.path, scope)
            elif template.expression is not None:
                result = self._expression(template.expression)(**scope)
            else:
                return self._render_template(self._template(template.source), scope, field)
            _check_data(result)
            self._check_size(result, field)
            return result
        except (TemplateSecurityError, TemplateError) as exc:
            if exc.field is None:
                exc.field = field or None
            raise
        except SecurityError as exc:
            raise TemplateSecurityError(
                f"template tried something the sandbox forbids: {exc}", field=field or None
            ) from None
        except UndefinedError as exc:
            raise TemplateError(
                f"template reference not found: {exc.message}",
                code="template_reference_error",
                field=field or None,
            ) from None
        except JinjaTemplateError as exc:
            raise TemplateError(f"template error: {exc.message}", field=field or None) from None
        except (TypeError, ValueError, ArithmeticError, LookupError, OverflowError) as exc:
            raise TemplateError(f"template error: {exc}", field=field or None) from None
        except (RecursionError, MemoryError):
            raise TemplateSecurityError(
                "template recursed or allocated past its limits",
                code="template_limit",
                field=field or None,
            ) from None
        finally:
            _deadline.reset(token)

    def _lookup(self, path: tuple[str, ...], scope: Mapping[str, Any]) -> Any:
        # What Jinja2 generates for `{{ a.b.c }}`: the name from the scope, else a global,
        # else an undefined; then one sandboxed getattr per dot.
        value = scope.get(path[0], _MISSING)
        if value is _MISSING:
            value = self.env.globals.get(path[0], _MISSING)
        if value is _MISSING:
            value = self.env.undefined(name=path[0])
        for attribute in path[1:]:
            value = self.env.getattr(value, attribute)
        return value

    def _render_template(self, template: Any, scope: Mapping[str, Any], field: str) -> str:
        chunks: list[str] = []
        size = 0
        deadline = _deadline.get()
        for chunk in template.generate(**scope):
            size += len(chunk)
            if size > self.max_output_bytes:
                raise TemplateSecurityError(
                    f"template output exceeds {self.max_output_bytes} bytes",
                    code="template_limit",
                    field=field or None,
                )
            if time.monotonic() > deadline:
                raise TemplateSecurityError(
                    "template took too long to render", code="template_limit"
                )
            chunks.append(chunk)
        return "".join(chunks)

    def _check_size(self, result: Any, field: str) -> None:
        if isinstance(result, str | bytes | list | dict) and len(result) > self.max_output_bytes:
            raise TemplateSecurityError(
                f"template output exceeds {self.max_output_bytes} bytes",
                code="template_limit",
                field=field or None,
            )

    # -- inspect -----------------------------------------------------------------------------

    def references(self, text: str) -> list[tuple[str, ...]]:
        """Every outside name a template reads, as attribute paths: ``("steps", "a", "output")``.

        Names bound inside the template (``for`` targets, ``set``) are not references.
        Raises ``TemplateError`` on a syntax error.
        """
        return list(self.compile(text).references)

    def _references(self, source: str) -> tuple[tuple[str, ...], ...]:
        try:
            ast = self.env.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}", line=exc.lineno) from None
        found: list[tuple[str, ...]] = []
        _collect(ast, meta.find_undeclared_variables(ast), found)
        return tuple(found)


def _json_spelling(value: Any) -> Any:
    """How a value is written inside a longer text: JSON's spelling for the values whose Python
    spelling differs (``True``, ``None``, ``{'a': 1}``); strings and numbers as they are."""
    if value is None or isinstance(value, bool | dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _check_data(value: Any, depth: int = 0) -> None:
    """A whole-value template must produce plain data; an Undefined raises its error here."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined (and the sandbox's unsafe undefined) raise on use
        raise TemplateError("template reference not found", code="template_reference_error")
    if value is None or isinstance(value, str | int | float | bool):
        return
    if depth > 32:
        raise TemplateError("template produced data nested too deeply")
    if isinstance(value, list | tuple):
        for item in value:
            _check_data(item, depth + 1)
        return
    if isinstance(value, Mapping):
        for item in value.values():
            _check_data(item, depth + 1)
        return
    raise TemplateSecurityError(
        f"template produced a {type(value).__name__}, not data", code="template_security_error"
    )


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            parts.append(str(node.arg.value))
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def _collect(node: nodes.Node, free: set[str], found: list[tuple[str, ...]]) -> None:
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Getattr | nodes.Getitem | nodes.Name):
            path = _chain(child)
            if path is not None:
                if path[0] in free:
                    found.append(path)
                continue
        _collect(child, free, found)
