"""What a value from outside becomes before puraify keeps it: JSON that every store and every
client can hold.

A platform's answer or a program's output may hold what JSON or the databases cannot: ``NaN``
and infinities (JSON has no spelling for them), NUL characters (PostgreSQL text refuses them),
lone surrogates (no UTF-8 encoding exists for them), keys that are not strings, values that are
not data. ``json_safe`` returns the value unchanged when it is already safe (the common case,
checked in one pass) and otherwise a copy with each such part replaced, by a documented rule:

- ``NaN``, ``Infinity`` and ``-Infinity`` become those words, as strings;
- a NUL character and a lone surrogate become U+FFFD (the replacement character);
- a key that is not a string becomes its text; a tuple becomes a list; an integer too long to
  write in decimal (over 4,300 digits, Python's limit) becomes ``"<integer too large>"``;
- anything else that is not data becomes its text, and a value nested deeper than
  ``MAX_DEPTH`` becomes the text ``"<nested too deeply>"`` (serializers, pydantic's among them,
  stop at a depth of their own; the result and its envelope must stay under it).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "UNSAFE_CHARS", "json_safe", "safe_text"]

MAX_DEPTH = 128
#: What no store can hold: NUL (PostgreSQL refuses it), a lone surrogate (no UTF-8 exists).
UNSAFE_CHARS = re.compile("[\x00\ud800-\udfff]")


def safe_text(text: str) -> str:
    """``text`` with NUL characters and lone surrogates replaced by U+FFFD."""
    return UNSAFE_CHARS.sub("\ufffd", text) if UNSAFE_CHARS.search(text) else text


def json_safe(value: Any) -> Any:
    """``value`` if every store and client can hold it as JSON; else a cleaned copy."""
    if _deeper_than(value, MAX_DEPTH):
        return _clean(value, 0)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        return _clean(value, 0)
    if "\\u0000" in text:  # json.dumps always escapes NUL
        return _clean(value, 0)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep (scalars are not visited)."""
    if not isinstance(value, dict | list | tuple):
        return False
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return False


def _clean(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return "<nested too deeply>"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 14_000 else "<integer too large>"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {
            safe_text(k if isinstance(k, str) else str(k)): _clean(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return safe_text(str(value))
