"""Regular expressions that a mission supplies, matched in linear time.

Python's ``re`` backtracks: ``(a+)+$`` against 30 ``a`` and a ``b`` takes minutes, and a step's
timeout cannot stop it while it runs on the engine's thread. User patterns compile with RE2
instead (the engine the mission spec's own regex crate follows: no backreferences or
lookaround, every match linear in the text). A pattern RE2 does not accept is
``invalid_parameters`` with RE2's reason.
"""

from __future__ import annotations

from typing import Any

from ..errors import ActionError

__all__ = ["user_regex"]


def user_regex(
    pattern: str, *, field: str, ignore_case: bool = False, literal: bool = False
) -> Any:
    """``pattern`` compiled by RE2 (``literal``: matched as plain text)."""
    import re2  # on first use: a mission without patterns does not load it

    options = re2.Options()
    options.log_errors = False  # RE2 would write each refusal to stderr as well
    options.case_sensitive = not ignore_case
    options.literal = literal
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "not a valid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ActionError(
            f"bad regex (RE2 syntax, no backreferences or lookaround): {reason}",
            code="invalid_parameters",
            field=field,
        ) from None
