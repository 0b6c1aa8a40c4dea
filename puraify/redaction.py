"""Secrets out of everything puraify shows or keeps.

Two kinds of text are replaced by ``[redacted]`` wherever they appear:

- every value this process fetched from the vault (``Redactor.add``), in the spellings it
  travels in: raw, base64 (standard and URL-safe, with and without padding), URL-encoded, hex
  (lower and upper case) and as it reads inside a JSON string; a ``basic`` credential also as
  ``username:password`` (what an Authorization header carries, base64-encoded). Values shorter
  than ``MIN_SECRET_LENGTH`` are not looked for: redacting every ``abc`` would destroy outputs
  and protect nothing;
- known token shapes, wherever they came from (``KNOWN_SHAPES``): Slack (``xox?-``), GitHub
  (``ghp_`` and its siblings), OpenAI-style ``sk-`` keys, AWS access key ids, JWTs and PEM
  private-key blocks.

One redactor serves the process (``SECRETS``): the engine's step results, the run store's
writes, the logs and the API's error bodies all pass through it. It forgets nothing a run could
still hold; its size is bounded (``MAX_SECRETS`` values, the oldest dropped first).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

__all__ = [
    "KNOWN_SHAPES",
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRETS",
    "SECRET_FIELDS",
    "Redactor",
    "spellings",
]

MASK = "[redacted]"
#: The fields of a credential's value that are secret (the others describe it).
SECRET_FIELDS = frozenset(
    {
        "token",
        "api_key",
        "access_token",
        "refresh_token",
        "id_token",
        "password",
        "secret",
        "client_secret",
        "url",
        "private_key",
        "passphrase",
    }
)
MIN_SECRET_LENGTH = 6
MAX_SECRETS = 10_000

#: Credentials recognisable by their form alone.
KNOWN_SHAPES = re.compile(
    r"xox[abeoprs]-[0-9A-Za-z-]{10,}"
    r"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|(?<![A-Za-z0-9])sk-(?:[A-Za-z0-9]+-)?[A-Za-z0-9_-]{20,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.|\n)*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[^\"']*"
)


def spellings(value: str) -> set[str]:
    """The forms ``value`` may travel in (see the module)."""
    raw = value.encode("utf-8", "surrogatepass")
    b64 = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    hexed = binascii.hexlify(raw).decode()
    found = {
        value,
        b64,
        b64.rstrip("="),
        urlsafe,
        urlsafe.rstrip("="),
        quote(value, safe=""),
        quote_plus(value, safe=""),
        hexed,
        hexed.upper(),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


class Redactor:
    """The values to hide, and the function that hides them (thread-safe)."""

    def __init__(self, *, shapes: bool = True) -> None:
        self._shapes = shapes
        self._values: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, *values: str) -> None:
        """Hide ``values`` (and their spellings) from now on."""
        with self._lock:
            changed = False
            for value in values:
                if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
                    continue
                for form in spellings(value):
                    if form in self._values:
                        self._values.move_to_end(form)
                    else:
                        self._values[form] = None
                        changed = True
            while len(self._values) > MAX_SECRETS:
                self._values.popitem(last=False)
                changed = True
            if changed:
                # longest first, so a value is never half-replaced by one of its own prefixes
                forms = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None

    def add_credential(self, value: Any) -> None:
        """Hide a credential's secrets: a text, or the secret fields of a mapping
        (``SECRET_FIELDS``: not its ``token_type``, ``username``, ``host`` or ``port``), the
        password inside a URL's userinfo, and a ``username:password`` pair as a Basic
        Authorization header carries it."""
        if isinstance(value, str):
            self.add(value)
            return
        if not isinstance(value, dict):
            return
        for name, field in value.items():
            if name not in SECRET_FIELDS:
                continue
            self.add(*_texts(field))
            if name == "url" and isinstance(field, str):
                try:
                    password = urlsplit(field).password
                except ValueError:
                    password = None
                if password:
                    self.add(password, unquote(password))
        if isinstance(value.get("password"), str):
            self.add(f"{value.get('username') or ''}:{value['password']}")

    def __contains__(self, value: str) -> bool:
        return value in self._values

    def text(self, text: str) -> str:
        """``text`` with every secret and known token shape replaced."""
        pattern = self._pattern
        if pattern is not None and pattern.search(text):
            text = pattern.sub(MASK, text)
        if self._shapes and KNOWN_SHAPES.search(text):
            text = KNOWN_SHAPES.sub(MASK, text)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every text in it redacted (keys included); unchanged when nothing
        in it is a secret (the common case: the same object comes back)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            changed = False
            out: dict[Any, Any] = {}
            for k, v in value.items():
                nk = self.text(k) if isinstance(k, str) else k
                nv = self.value(v)
                changed = changed or nk is not k or nv is not v
                out[nk] = nv
            return out if changed else value
        if isinstance(value, list | tuple):
            items = [self.value(v) for v in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items if isinstance(value, list) else tuple(items)
            return value
        return value

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._values.clear()
            self._pattern = None


def _texts(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _texts(v)


#: The process's redactor.
SECRETS = Redactor()
