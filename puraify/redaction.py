"""Secrets out of everything puraify shows or keeps.

Two kinds of text are replaced by ``[redacted]``:

- the values a run's steps were given from the vault, in what that run shows (its step
  outputs, errors, events and log lines), in the spellings they travel in: raw, base64
  (standard and URL-safe, with and without padding), URL-encoded (fully, as a path keeps ``/``,
  as a query writes spaces), hex, as it reads inside a JSON string (``\\/`` included) and in a
  Python ``repr``; matched without regard to case (a host name is lower-cased on its way out,
  hex comes in both cases). A ``basic`` credential also as ``username:password`` (what an
  Authorization header base64-encodes). Values shorter than ``MIN_SECRET_LENGTH`` are not
  looked for: redacting every ``abc`` would destroy outputs and protect nothing;
- known token shapes, wherever they came from (``KNOWN_SHAPES``): Slack (``xox?-``), GitHub
  (``ghp_`` and its siblings), ``sk-`` keys, AWS access key ids, JWTs and PEM private keys.

Each project has its own redactor (``RUNS.project(name)``), and each run is bound to its
project's while it runs (``RUNS.bind``): a run hides every value any run of its project was
given in this process (a secret one run wrote to a file stays hidden when the next one reads it
back), and one project's values never change what another project's runs show: no run can
learn whether a text is someone else's secret by watching it disappear, and none can push
another's values out. ``OPERATOR`` holds the operator's own secrets (OAuth2 client secrets),
hidden everywhere. Text that belongs to no run (API error bodies, the run store's safety net)
is redacted of token shapes and ``OPERATOR``. Every pattern runs in time linear in the text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from cachetools import TTLCache

__all__ = [
    "KNOWN_SHAPES",
    "MASK",
    "MIN_SECRET_LENGTH",
    "OPERATOR",
    "RUNS",
    "SECRET_FIELDS",
    "Redactor",
    "RunSecrets",
    "redact",
    "spellings",
]

MASK = "[redacted]"
MIN_SECRET_LENGTH = 6
_MIN_CORE = 8  # a base64 fragment shorter than this would match too much
#: Spellings one redactor keeps (a project's credentials, each in ~25 spellings; past it, the
#: oldest are forgotten first: refreshed tokens long expired).
MAX_SECRETS = 8192
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

#: Credentials recognisable by their form alone. Each alternative starts only where a token
#: starts and consumes possessively, so a text is scanned in linear time whatever it holds.
KNOWN_SHAPES = re.compile(
    r"(?<![0-9A-Za-z-])xox[abeoprs]-[0-9A-Za-z-]{10,}+"
    r"|(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,}+|github_pat_[A-Za-z0-9_]{30,}+)"
    r"|(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}+"
    r"|(?<![A-Z0-9])AKIA[0-9A-Z]{16}(?![0-9A-Z])"
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}+\.eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{10,}+"
    # a PEM private key: its body up to its END line, or up to a quote where it was cut
    r"|-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----(?:(?!-----END )[^\"'])*+"
    r"(?:-----END [A-Z ]{0,40}PRIVATE KEY-----)?"
)


@functools.cache
def _shape_starts() -> Any:
    """What every known shape starts with: a text without any of these holds none, and RE2
    finds that out about ten times faster than ``KNOWN_SHAPES`` (lookbehinds, which RE2
    does not have) scans it."""
    import re2

    return re2.compile(r"xox[abeoprs]-|gh[pousr]_|github_pat_|sk-|AKIA|eyJ|-----BEGIN ")


def _may_hold_shapes(text: str) -> bool:
    """Whether ``text`` may hold one of the known shapes: a short text always may (scanning
    it is cheaper than asking RE2), a long one when RE2 finds one of their starts (or cannot
    take it: a lone surrogate is not UTF-8)."""
    if len(text) < _RE2_FROM:
        return True
    try:
        return _shape_starts().search(text) is not None
    except UnicodeEncodeError:
        return True


# what a URL's path and an httpx-built URL keep unencoded (RFC 3986 sub-delims, ':' and '@')
_PATH_SAFE = "/:@!$&'()*+,;="


def _base64_cores(raw: bytes) -> set[str]:
    """What base64 shows of ``raw`` wherever it sits in a longer text (``api:`` + key, in a
    Basic header): the characters of the 3-byte groups made of its bytes alone, at each of
    the three offsets it can start at."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        first, last = (offset + 2) // 3, (offset + len(raw)) // 3
        if last > first:
            core = encoded[4 * first : 4 * last]
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    return {c for c in cores if len(c) >= _MIN_CORE}


def spellings(value: str) -> set[str]:
    """The forms ``value`` may travel in (see the module)."""
    raw = value.encode("utf-8", "surrogatepass")
    b64 = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    hexed = binascii.hexlify(raw).decode()
    in_json = json.dumps(value)[1:-1]
    in_path = quote(value, safe="/")
    found = _base64_cores(raw) | {
        value,
        b64,
        b64.rstrip("="),
        urlsafe,
        urlsafe.rstrip("="),
        quote(value, safe=""),
        quote(value, safe="/"),
        quote(value, safe=_PATH_SAFE),
        quote_plus(value, safe=""),
        quote_plus(value, safe="/"),
        hexed,
        in_json,
        in_json.replace("/", "\\/"),
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(in_path)[1:-1].replace("/", "\\/"),
        json.dumps(json.dumps(value))[3:-3],
        html.escape(value),
        html.escape(value, quote=False),
        repr(value)[1:-1],
    }
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


#: From this length on a text is scanned with RE2: below it, a call into RE2 (about 1.5 us,
#: the text encoded to UTF-8 first) costs more than ``re`` takes to scan the whole text.
_RE2_FROM = 256


class _Alternation:
    """One case-blind pattern matching any of ``texts`` (the first that matches, in order).
    RE2 scans a text once whatever the number of alternatives, about ten times faster than
    ``re`` on a megabyte; ``re`` (compiled when first needed) where RE2 cannot go: past its
    memory budget, or a text holding a lone surrogate, which is not UTF-8."""

    def __init__(self, texts: list[str]) -> None:
        import re2  # on first use: a process that never hides a value does not load it

        self.texts = texts
        self._slow: re.Pattern[str] | None = None
        try:
            self._fast: Any = re2.compile("(?i)" + "|".join(map(re2.escape, texts)))
        except re2.error:
            self._fast = None

    @property
    def slow(self) -> re.Pattern[str]:
        if self._slow is None:
            self._slow = re.compile("|".join(map(re.escape, self.texts)), re.IGNORECASE)
        return self._slow

    def search(self, text: str) -> bool:
        if self._fast is not None and len(text) >= _RE2_FROM:
            try:
                return self._fast.search(text) is not None
            except UnicodeEncodeError:
                pass
        return self.slow.search(text) is not None

    def sub(self, replacement: str, text: str) -> str:
        if self._fast is not None and len(text) >= _RE2_FROM:
            try:
                return str(self._fast.sub(replacement, text))
            except UnicodeEncodeError:
                pass
        return self.slow.sub(replacement, text)


class Redactor:
    """Values to hide (and, with ``shapes``, known token shapes), and the function that hides
    them; thread-safe."""

    def __init__(self, *, shapes: bool = True) -> None:
        self._shapes = shapes
        self._values: OrderedDict[str, None] = OrderedDict()
        self._pattern: _Alternation | None = None
        self._lock = threading.Lock()

    def add(self, *values: str) -> None:
        """Hide ``values`` (and their spellings) from now on; past ``MAX_SECRETS`` spellings
        the least recently added are forgotten."""
        with self._lock:
            forms = {
                form
                for value in values
                if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH
                for form in spellings(value)
            }
            new = forms - self._values.keys()
            for form in forms & self._values.keys():
                self._values.move_to_end(form)
            if not new:
                return
            self._values.update(dict.fromkeys(sorted(new)))
            while len(self._values) > MAX_SECRETS:
                self._values.popitem(last=False)
            # longest first, so a value is never half-replaced by one of its own prefixes
            self._pattern = _Alternation(sorted(self._values, key=len, reverse=True))

    def add_credential(self, value: Any) -> None:
        """Hide a credential's secrets: a text, or the secret fields of a mapping
        (``SECRET_FIELDS``: not its ``token_type``, ``username``, ``host`` or ``port``), the
        password inside a URL's userinfo, and a ``username:password`` pair as a Basic
        Authorization header carries it."""
        if isinstance(value, str | int | float):
            self.add(str(value))
            return
        if not isinstance(value, dict):
            return
        texts: list[str] = []
        for name, field in value.items():
            if name not in SECRET_FIELDS:
                continue
            texts.extend(_texts(field))
            if name == "url" and isinstance(field, str):
                try:
                    password = urlsplit(field).password
                except ValueError:
                    password = None
                if password:
                    texts += [password, unquote(password)]
        if value.get("password") is not None:
            texts.append(f"{value.get('username') or ''}:{value['password']}")
        self.add(*texts)

    def __contains__(self, value: str) -> bool:
        return value in self._values

    def text(self, text: str) -> str:
        """``text`` with every secret (and known token shape) replaced."""
        pattern = self._pattern
        if pattern is not None and pattern.search(text):
            text = pattern.sub(MASK, text)
        if self._shapes and _may_hold_shapes(text) and KNOWN_SHAPES.search(text):
            text = KNOWN_SHAPES.sub(MASK, text)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every text in it redacted, mapping keys included (a key that was a
        secret becomes ``[redacted]``, ``[redacted] 2``, ...: two never merge). Unchanged
        when nothing in it is a secret (the same object comes back)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            changed = False
            out: dict[Any, Any] = {}
            for k, v in value.items():
                nk = self.text(k) if isinstance(k, str) else k
                if nk is not k:
                    base, n = nk, 1
                    while nk in out or nk in value:
                        n += 1
                        nk = f"{base} {n}"
                nv = self.value(v)
                changed = changed or nv is not v or nk is not k
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


class RunSecrets:
    """Each project's redactor, and which project each running run belongs to. A run is bound
    while it runs and ``linger_seconds`` after it ends (its last events and log lines are
    written then); a project's redactor lives as long as the process."""

    def __init__(self, linger_seconds: float = 600.0) -> None:
        self._projects: dict[str, Redactor] = {}
        self._live: dict[str, Redactor] = {}
        self._ended: TTLCache[str, Redactor] = TTLCache(maxsize=65536, ttl=linger_seconds)
        self._lock = threading.Lock()

    def project(self, name: str) -> Redactor:
        """The project's redactor (made on first use)."""
        with self._lock:
            found = self._projects.get(name)
            if found is None:
                # its values only: every use is followed by OPERATOR, which hides the shapes
                found = self._projects[name] = Redactor(shapes=False)
            return found

    def bind(self, run_id: str, project: str) -> Redactor:
        """``run_id`` runs for ``project``: its outputs and log lines are redacted of every
        value any of the project's runs was given."""
        found = self.project(project)
        with self._lock:
            self._live[run_id] = found
        return found

    def get(self, run_id: object) -> Redactor | None:
        """The redactor of the run's project, if the run is bound."""
        if not isinstance(run_id, str):
            return None
        with self._lock:
            return self._live.get(run_id) or self._ended.get(run_id)

    def end(self, run_id: str) -> None:
        """The run ended: it stays bound a while, then goes."""
        with self._lock:
            found = self._live.pop(run_id, None)
            if found is not None:
                self._ended[run_id] = found

    def clear(self) -> None:
        """Forget every project and run (tests)."""
        with self._lock:
            self._projects.clear()
            self._live.clear()
            self._ended.clear()


def _texts(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _texts(v)


#: Every run's redactor.
RUNS = RunSecrets()
#: The operator's own secrets (OAuth2 client secrets), and known token shapes: hidden in every
#: text, a run's or not.
OPERATOR = Redactor()


def redact(value: Any, run_id: object = None) -> Any:
    """``value`` redacted of the operator's secrets, token shapes and, when ``run_id`` names a
    run that was given values, that run's."""
    run = RUNS.get(run_id)
    if run is not None:
        value = run.value(value)
    return OPERATOR.value(value)
