"""`puraify doctor`: each check does the real thing and says what it found."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from puraify.runtime.guards.commands import containment
from puraify.store.database import HEAD_REVISION
from tests.helpers import cli


def doctor(tmp_path: Path, **env: str) -> tuple[int, dict[str, Any]]:
    done = cli(
        "doctor", "--json", cwd=tmp_path, env={"PURAIFY_HOME": str(tmp_path / "home"), **env}
    )
    return done.returncode, json.loads(done.stdout)


def checks(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


def test_doctor_reports_every_check(tmp_path: Path) -> None:
    code, report = doctor(tmp_path)
    found = checks(report)
    assert list(found) == ["profile", "command sandbox", "run store", "disk", "action sandbox"]
    assert code == 0 and report["ok"] is True
    assert found["profile"]["status"] == "ok" and "server profile" in found["profile"]["detail"]
    sandbox = found["command sandbox"]
    fine = containment() == "sandbox" and os.getuid() != 0
    assert sandbox["status"] == ("ok" if fine else "warning")
    assert ("runs as root" in sandbox["detail"]) == (os.getuid() == 0)
    assert "command_allow: none listed" in sandbox["detail"]
    assert f"schema {HEAD_REVISION}" in found["run store"]["detail"]
    assert found["disk"]["status"] == "ok"
    assert found["action sandbox"]["status"] == "ok"
    assert "answered" in found["action sandbox"]["detail"]


def test_doctor_says_where_protection_is_off(tmp_path: Path) -> None:
    code, report = doctor(
        tmp_path,
        PURAIFY_MODE="local",
        PURAIFY_COMMAND_CONTAIN="false",
        PURAIFY_ACTION_WORKERS="0",
        PURAIFY_COMMAND_ALLOW='["git"]',
    )
    found = checks(report)
    assert code == 0  # it runs, with less protection: warnings, not failures
    assert found["profile"]["status"] == "warning" and "local profile" in found["profile"]["detail"]
    assert found["command sandbox"]["status"] == "warning"
    assert "command_contain = false" in found["command sandbox"]["detail"]
    assert found["action sandbox"]["status"] == "warning"


def test_doctor_fails_on_a_store_it_cannot_open_and_hides_its_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://puraify:s3cret-pw@127.0.0.1:1/nothing"
    done = cli(
        "doctor",
        cwd=tmp_path,
        env={"PURAIFY_HOME": str(tmp_path / "home"), "PURAIFY_DATABASE_URL": url, "COLUMNS": "300"},
    )
    assert done.returncode == 1
    assert "failed" in done.stdout and "run store" in done.stdout
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://puraify@127.0.0.1:1/nothing?password=s3cret-pw",
        "not a url s3cret-pw",
        "postgresql+asyncpg://u:s3cret-pw@[::1/db",
    ],
)
def test_doctor_hides_passwords_anywhere_in_the_url(tmp_path: Path, url: str) -> None:
    code, report = doctor(tmp_path, PURAIFY_DATABASE_URL=url)
    store = checks(report)["run store"]
    assert code == 1 and store["status"] == "failed"
    assert "s3cret-pw" not in json.dumps(report)


def test_doctor_fails_below_the_minimum_free_space(tmp_path: Path) -> None:
    code, report = doctor(tmp_path, PURAIFY_READY_MIN_FREE_BYTES=str(2**62))
    assert code == 1 and report["ok"] is False
    assert checks(report)["disk"]["status"] == "failed"
