"""SEC-09: schemathesis over the live server's /openapi.json finds no 5xx and no response that
breaks the schema (status codes, content types and bodies as documented)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.test_server import Server

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sec09_schemathesis(tmp_path: Path) -> None:
    st = shutil.which(
        "schemathesis", path=str(Path(__file__).resolve().parents[2] / ".venv" / "bin")
    ) or shutil.which("schemathesis")
    if st is None:
        pytest.fail("schemathesis is a dev dependency; run scripts/install")
    server = Server(tmp_path / "home", {"PURAIFY_EGRESS_ONLY_ALLOWLISTED": "true"})
    token = server.token(
        scopes=("execute", "runs:read", "runs:write", "actions:read", "metrics:read")
    )
    server.start()
    try:
        proc = subprocess.run(
            [
                st,
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--max-examples",
                "25",
                "--checks",
                CHECKS,
                "--seed",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=280,
            cwd=tmp_path,  # its cache of found failures stays out of the repository
        )
    finally:
        server.stop()
    summary = proc.stdout[-3000:]
    print(summary)
    assert proc.returncode == 0, summary
    assert "Tested: 15" in proc.stdout, summary
    assert " passed" in summary and "failures" not in summary.split("SUMMARY")[-1], summary
