"""SEC-09: schemathesis over the live server's /openapi.json finds no 5xx and no response that
breaks the schema (status codes, content types and bodies as documented).

schemathesis runs as this interpreter's module (no path to a virtualenv), and the verdict is
read from its exit status and its JUnit report: every operation the server documents is tested,
none failed or erred. Its human-readable summary is for people and is only printed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from tests.api.test_server import Server

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sec09_schemathesis(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", {"PURAIFY_EGRESS_ONLY_ALLOWLISTED": "true"})
    token = server.token(
        scopes=("execute", "runs:read", "runs:write", "actions:read", "metrics:read")
    )
    report = tmp_path / "schemathesis.xml"
    server.start()
    try:
        paths = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json"),
                *("--header", f"Authorization: Bearer {token}"),
                *("--max-examples", "25", "--seed", "1", "--no-color"),
                *("--checks", CHECKS),
                *("--report", "junit", "--report-junit-path", str(report)),
            ],
            capture_output=True,
            text=True,
            timeout=280,
            cwd=tmp_path,  # its cache of found failures stays out of the repository
        )
    finally:
        server.stop()
    summary = proc.stdout[-3000:] + proc.stderr[-2000:]
    print(summary)
    assert proc.returncode == 0, summary
    # a phase that had nothing to do for an operation marks it skipped; only a failure or an
    # error is a finding
    outcomes = {
        case.get("name"): {child.tag for child in case} & {"failure", "error"}
        for case in ElementTree.parse(report).getroot().iter("testcase")
    }
    documented = {
        f"{method.upper()} {path}"
        for path, item in paths.items()
        for method in item
        if method in METHODS
    }
    assert documented and documented <= outcomes.keys(), documented - outcomes.keys()
    broken = {name: tags for name, tags in outcomes.items() if tags}
    assert broken == {}, summary
