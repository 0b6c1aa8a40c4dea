"""SEC-07: random secrets stored in the vault and used by missions (http with a credential,
templates in URLs, messages and commands), error paths included (a receiver that echoes the
Authorization header back, raw and encoded, and answers 500; a refused connection to a URL that
holds a token), appear 0 times, raw, base64, URL-encoded or hex, in logs, stdout, stderr, the
database file, API responses, CLI output and exported runs. Token shapes that did not come from
the vault (a Slack bot token, a JWT) are redacted too."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from puraify.service import compose
from puraify.settings import Settings
from puraify.testing import LocalServer
from tests.helpers import cli

SLACK_SHAPE = "xoxb-" + "1234567890-" + "abcdefghijklmnop"
JWT_SHAPE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQtaGVyZQ"


def canary(prefix: str) -> str:
    return f"{prefix}-{os.urandom(12).hex()}"


class Echo:
    """Answers with the request's Authorization header in every spelling (and 500 on /fail),
    plus token shapes of its own."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth.partition(" ")[2]
        body = json.dumps(
            {
                "auth": auth,
                "b64": base64.b64encode(token.encode()).decode(),
                "url": quote(token, safe=""),
                "hex": token.encode().hex(),
                "shapes": f"{SLACK_SHAPE} {JWT_SHAPE}",
            }
        ).encode()
        status = 500 if scope["path"] == "/fail" else 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"x-echo", auth.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(name="echo")
def echo_server() -> Iterator[str]:
    with LocalServer(Echo()) as server:
        yield server.url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spellings(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        raw.hex(),
        raw.hex().upper(),
    }


def leaks(text: str, secrets: list[str]) -> list[str]:
    found = [form for s in secrets for form in spellings(s) if form in text]
    return found + [shape for shape in (SLACK_SHAPE, JWT_SHAPE) if shape in text]


def mission(echo: str, *, commands: bool) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {
            "id": "bearer",
            "step_type": "http",
            "parameters": {"url": f"{echo}/ok", "credential": "echo"},
        },
        {
            "id": "basic_fails",
            "step_type": "http",
            "parameters": {"url": f"{echo}/fail", "credential": "basic"},
            "continue_on_error": True,
        },
        {
            "id": "refused",
            "step_type": "http",
            "parameters": {
                "url": f"http://127.0.0.1:{closed_port()}/x?key={{{{ secrets.keyed }}}}",
                "timeout": 5,
            },
            "continue_on_error": True,
        },
        {
            "id": "say",
            "step_type": "log_message",
            "parameters": {
                "message": "{{ secrets.keyed }} {{ secrets.echo }} {{ secrets.basic.password }}"
            },
        },
        {  # a file written with it and read back
            "id": "write",
            "step_type": "create_file",
            "parameters": {"path": "note.txt", "content": "{{ secrets.echo }}", "overwrite": True},
        },
        {
            "id": "read",
            "step_type": "read_file",
            "depends_on": ["write"],
            "parameters": {"path": "note.txt"},
        },
        {  # parsed in the sandbox's worker processes
            "id": "parse",
            "step_type": "parse_json",
            "parameters": {"content": '{"key": "{{ secrets.keyed }}"}'},
        },
    ]
    if commands:
        steps.append(
            {
                "id": "shell",
                "step_type": "command",
                "parameters": {"command": "echo", "args": ["{{ secrets.keyed }}"]},
            }
        )
    return {"name": "canaries", "config": {"fail_fast": False}, "steps": steps}


def assert_no_leaks(texts: dict[str, str], secrets: list[str]) -> None:
    """No secret, in any spelling, and no known token shape, in any of ``texts``."""
    assert {where: leaks(text, secrets) for where, text in texts.items()} == {k: [] for k in texts}


async def store_canaries(app: Any, project: str) -> list[str]:
    bearer, keyed, password = canary("bear"), canary("keyd"), canary("pass")
    await app.vault.put(project, "echo", "token", bearer)
    await app.vault.put(project, "keyed", "api_key", keyed)
    await app.vault.put(project, "basic", "basic", {"username": "ops", "password": password})
    return [bearer, keyed, password, f"ops:{password}"]


def database_bytes(home: Path) -> str:
    return "".join(
        p.read_bytes().decode("latin-1") for p in home.glob("puraify.db*") if p.is_file()
    )


def test_sec07_canaries_through_the_command_line(tmp_path: Path, echo: str) -> None:
    home = tmp_path / "home"

    async def store() -> list[str]:
        async with compose(Settings(home=home), listen=None, environ={}, cwd=tmp_path) as app:
            return await store_canaries(app, "default")

    secrets = asyncio.run(store())
    (tmp_path / "m.json").write_text(json.dumps(mission(echo, commands=True)))
    env = {"PURAIFY_HOME": str(home)}
    plain = cli("run", "m.json", "--safety-level", "permissive", cwd=tmp_path, env=env)
    as_json = cli("run", "m.json", "--json", "--safety-level", "permissive", cwd=tmp_path, env=env)
    result = json.loads(as_json.stdout)
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    outputs = result["step_results"]
    # the steps did use them: the receiver saw and echoed the real values
    assert outputs["bearer"]["output"]["body"]["auth"] == "Bearer [redacted]"
    assert outputs["basic_fails"]["status"] == "failed"
    assert outputs["basic_fails"]["output"]["headers"]["x-echo"] == "Basic [redacted]"
    assert outputs["shell"]["output"]["stdout"].strip() == "[redacted]"
    assert outputs["read"]["output"]["content"] == "[redacted]"
    assert outputs["parse"]["output"]["data"] == {"key": "[redacted]"}
    shown = cli("runs", "show", result["run_id"], "--json", cwd=tmp_path, env=env)
    exported = cli("runs", "export", result["run_id"], cwd=tmp_path, env=env)
    listed = cli("runs", "list", cwd=tmp_path, env=env)
    texts = {
        "run stdout": plain.stdout,
        "run stderr (logs)": plain.stderr,
        "run --json": as_json.stdout + as_json.stderr,
        "runs show": shown.stdout + shown.stderr,
        "runs export": exported.stdout + exported.stderr,
        "runs list": listed.stdout,
        "database file": database_bytes(home),
    }
    assert exported.returncode == 0 and result["run_id"] in exported.stdout
    assert_no_leaks(texts, secrets)
