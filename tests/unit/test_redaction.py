"""The redactor: a secret in each spelling it travels in, known token shapes, only a
credential's secret fields (never a word such as its ``token_type``), and each run its own."""

from __future__ import annotations

import base64
import html
import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from puraify.redaction import MASK, Redactor, RunSecrets


@given(st.text(min_size=6, max_size=64).filter(lambda s: "\x00" not in s))
def test_a_secret_is_gone_in_every_spelling(secret: str) -> None:
    redactor = Redactor(shapes=False)
    redactor.add(secret)
    raw = secret.encode("utf-8", "surrogatepass")
    forms = [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(secret, safe=""),
        raw.hex(),
        raw.hex().upper(),
        json.dumps(secret)[1:-1],
    ]
    for form in forms:
        if len(form) < 6:
            continue
        out = redactor.text(f"<<{form}>>")
        assert form not in out or form in MASK, (form, out)


def test_known_shapes_and_their_neighbours() -> None:
    redactor = Redactor()
    shapes = [
        "xoxb-123456789012-abcdefghijkl",
        "ghp_" + "a" * 36,
        "sk-" + "A1" * 12,
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXBhcnQ",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    ]
    for shape in shapes:
        assert redactor.text(f"a {shape} b") == f"a {MASK} b", shape
    for word in ("task-" + "a" * 30, "risk-assessment-of-the-quarter", "Bearer", "skeleton"):
        assert redactor.text(word) == word


def test_only_a_credentials_secret_fields_are_hidden() -> None:
    redactor = Redactor(shapes=False)
    redactor.add_credential(
        {"access_token": "at-123456", "refresh_token": "rt-123456", "token_type": "Bearer"}
    )
    redactor.add_credential({"host": "smtp.example.com", "port": 587, "password": "pw-123456"})
    redactor.add_credential({"url": "postgresql://app:s3cr%40t-pass@db.internal/prod"})
    text = "Bearer at-123456 rt-123456 smtp.example.com pw-123456 s3cr@t-pass"
    assert redactor.text(text) == f"Bearer {MASK} {MASK} smtp.example.com {MASK} {MASK}"
    basic = Redactor(shapes=False)
    basic.add_credential({"username": "ops", "password": "pw-654321"})
    header = "Basic " + base64.b64encode(b"ops:pw-654321").decode()
    assert basic.text(header) == f"Basic {MASK}"


def test_a_clean_value_comes_back_unchanged() -> None:
    redactor = Redactor()
    redactor.add("s3cret-value")
    clean = {"a": [1, "two", {"three": None}]}
    assert redactor.value(clean) is clean
    assert redactor.value({"k": ["x s3cret-value y"]}) == {"k": [f"x {MASK} y"]}
    # a key that is a secret is renamed; two such keys never merge into one
    assert redactor.value({"s3cret-value": 1, "x s3cret-value": 2, "ok": 3}) == {
        MASK: 1,
        f"x {MASK}": 2,
        "ok": 3,
    }
    assert redactor.value({"s3cret-value": 1, "S3CRET-VALUE": 2}) == {MASK: 1, f"{MASK} 2": 2}


def test_spellings_on_the_way_out() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    redactor = Redactor(shapes=False)
    redactor.add(secret, "AbCdEfGh12345678", "q'uo\"te\\back\x7fdel")
    for shown in (
        "wJalrXUtnFEMI/K7MDENG%2BbPxRfiCYEXAMPLEKEY",  # urlencode keeps /
        "wJalrXUtnFEMI\\/K7MDENG+bPxRfiCYEXAMPLEKEY",  # JSON with an escaped slash
        "http://abcdefgh12345678.invalid/x",  # a host, lower-cased
        repr("q'uo\"te\\back\x7fdel"),
        json.dumps("/" + quote(secret, safe="/"))[1:-1].replace("/", "\\/"),  # PHP echoing a path
        html.escape("q'uo\"te\\back\x7fdel"),
        base64.b64encode(b"api:" + secret.encode()).decode(),  # Basic auth with a key
        json.dumps(json.dumps({"k": secret})),  # JSON inside JSON
    ):
        assert MASK in redactor.text(shown), shown
    assert "12345678" not in redactor.text("http://abcdefgh12345678.invalid/x")


def test_each_project_hides_its_own_values_in_all_its_runs() -> None:
    runs = RunSecrets()
    runs.bind("run-1", "acme").add_credential({"password": "Summer2024!"})
    runs.end("run-1")
    # a later run of the project hides it too (read back from a file the first one wrote)
    later = runs.bind("run-2", "acme")
    assert later.text("x Summer2024! y") == f"x {MASK} y"
    assert runs.get("run-1") is not None  # the ended run's last lines are still redacted
    # another project's run shows its own text as it is: no oracle, nothing pushed out
    other = runs.bind("run-3", "globex")
    assert other.text("x Summer2024! y") == "x Summer2024! y"
    assert runs.get("unbound") is None


@pytest.mark.timeout(60)  # quadratic matching would take many minutes here, linear a second
def test_known_shapes_are_found_in_linear_time() -> None:
    redactor = Redactor()
    for hostile in (
        "eyJ" * 300_000,
        "-----BEGIN RSA PRIVATE KEY-----'" * 30_000,
        "xoxb-" * 200_000,
        "sk-" * 300_000,
        "ghp_" * 200_000,
    ):
        redactor.text(hostile)
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- after"
    assert redactor.text(pem) == f"{MASK} after"
    assert redactor.text("cut: -----BEGIN PRIVATE KEY-----\nMIIEvQ' tail") == f"cut: {MASK}' tail"


async def test_a_large_output_is_redacted_off_the_loop_as_a_small_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outputs past a quarter MiB of text are cleaned in a thread: the same result."""
    import threading

    from puraify.redaction import RUNS
    from puraify.runtime import attempts
    from puraify.runtime.attempts import _LARGE_OUTPUT_CHARS, _cleaned, _text_size

    where: list[int] = []  # the thread each output was redacted on

    def redact(value: Any, run_id: object = None) -> Any:
        where.append(threading.get_ident())
        return attempts_redact(value, run_id)

    from puraify.redaction import redact as attempts_redact

    monkeypatch.setattr(attempts, "redact", redact)
    RUNS.bind("run-large", "acme-large").add_credential({"token": "tok-Large-7f3a9b"})
    try:
        small = {"body": "a tok-Large-7f3a9b b"}
        large = {"body": "x" * _LARGE_OUTPUT_CHARS + " tok-Large-7f3a9b ", "n": float("nan")}
        cleaned_small = await _cleaned(small, "run-large")
        cleaned_large = await _cleaned(large, "run-large")
        assert cleaned_small == {"body": f"a {MASK} b"}
        assert "tok-Large-7f3a9b" not in str(cleaned_large) and MASK in cleaned_large["body"]
        assert cleaned_large["n"] == "NaN"  # made storable too (JSON has no NaN)
        loop = threading.get_ident()
        assert where == [loop, where[1]] and where[1] != loop  # the large one off the loop
        many_items: dict[str, list[list[int]]] = {
            "rows": [[] for _ in range(_LARGE_OUTPUT_CHARS)]
        }  # little text, many items
        assert _text_size(many_items, _LARGE_OUTPUT_CHARS) >= _LARGE_OUTPUT_CHARS
    finally:
        RUNS.end("run-large")


def test_every_known_shape_starts_as_the_fast_check_expects() -> None:
    """A text the RE2 pre-check passes over holds no known shape: each alternative of
    KNOWN_SHAPES begins with one of the literals it looks for."""
    from puraify.redaction import KNOWN_SHAPES, _shape_starts

    samples = [
        "xoxb-" + "1" * 12,
        "ghp_" + "a" * 36,
        "github_pat_" + "a" * 40,
        "sk-" + "a" * 24,
        "AKIA" + "A" * 16,
        "eyJabcdef.eyJabcdef.abcdefghijkl",
        "-----BEGIN RSA PRIVATE KEY-----MIIEow",
    ]
    for sample in samples:
        assert KNOWN_SHAPES.search(sample), sample
        assert _shape_starts().search(sample), sample
    assert not _shape_starts().search("lorem ipsum " * 1000)


def test_a_text_with_a_lone_surrogate_is_redacted_too() -> None:
    """RE2 takes UTF-8 only: a text holding a lone surrogate (from a JSON escape) is matched
    the slower way, never left as it is and never an error."""
    redactor = Redactor()
    redactor.add("Summer2024!")
    text = "x \ud800 Summer2024! " + "\ud800" + " xoxb-" + "1" * 12
    assert redactor.text(text) == f"x \ud800 {MASK} \ud800 {MASK}"
