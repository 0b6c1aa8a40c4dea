"""Templates: sandboxed Jinja2 rendering of step parameters and the names templates may read.

May import: ``errors``, ``mission`` (models, and ``mission.compile``'s rule for what is a
template), Jinja2. No I/O library.
Invariants: never ``eval``; rendering is single pass (step outputs are values, never templates);
output size and render time are capped.
"""

from __future__ import annotations

from .render import CompiledTemplate, TemplateEngine, contains_template
from .scope import BUILTIN_NAMES, Scope

__all__ = ["BUILTIN_NAMES", "CompiledTemplate", "Scope", "TemplateEngine", "contains_template"]
