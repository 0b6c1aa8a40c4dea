"""The safety profile is decided in one place, from the operator's setting and the edge's role."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog

from puraify.service import choose_profile, compose
from puraify.settings import Settings


@pytest.mark.parametrize(
    ("mode", "listen", "expected"),
    [
        (None, "127.0.0.1", "server"),
        (None, "0.0.0.0", "server"),
        (None, None, "local"),
        ("local", "0.0.0.0", "local"),
        ("server", None, "server"),
    ],
)
def test_the_profile_follows_the_operator_then_the_role(
    tmp_path: Path, mode: str | None, listen: str | None, expected: str
) -> None:
    settings = Settings(home=tmp_path, mode=mode)  # type: ignore[arg-type]
    assert choose_profile(settings, listen=listen) == expected


def test_profile_defaults_and_explicit_settings(tmp_path: Path) -> None:
    server = Settings(home=tmp_path).profile("server")
    assert (server.allow_loopback, server.commands_enabled, server.env_allow) == (False, False, ())
    local = Settings(home=tmp_path).profile("local")
    assert (local.allow_loopback, local.commands_enabled, local.env_allow) == (True, True, ("*",))
    opened = Settings(home=tmp_path, command_enabled=True, template_env_allow=("TZ",))
    assert opened.profile("server").commands_enabled
    assert opened.profile("server").env_allow == ("TZ",)


@pytest.mark.parametrize(("host", "level"), [("127.0.0.1", "warning"), ("0.0.0.0", "error")])
async def test_serving_with_the_local_profile_warns_louder_when_exposed(
    tmp_path: Path, host: str, level: str
) -> None:
    settings = Settings(home=tmp_path / "home", mode="local")
    with structlog.testing.capture_logs() as logs:
        async with compose(settings, listen=host, environ=dict(os.environ), cwd=tmp_path) as app:
            assert not app.profile.server
    warned = [e for e in logs if e["event"] == "local_profile_listening"]
    assert [e["log_level"] for e in warned] == [level]
    assert warned[0]["exposed"] is (host == "0.0.0.0")


async def test_no_warning_in_the_server_profile(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        async with compose(
            Settings(home=tmp_path / "home"), listen="0.0.0.0", environ={}, cwd=tmp_path
        ) as app:
            assert app.profile.server
    assert not [e for e in logs if e["event"] == "local_profile_listening"]
