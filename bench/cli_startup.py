"""Whole-process timings: ``puraify --help`` (target 0.3 s) and a 1-step mission (0.6 s)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from ._util import Report, best_of


def run(report: Report) -> None:
    base = best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 5)
    helptime = best_of(
        lambda: subprocess.run(
            [sys.executable, "-m", "puraify", "--help"], check=True, capture_output=True
        ),
        5,
    )
    report.add(
        "`puraify --help` as a process",
        helptime,
        "s",
        target=0.3,
        baseline=base,
        baseline_name="python -c pass",
    )
    with tempfile.TemporaryDirectory() as tmp:
        mission = Path(tmp) / "one.yaml"
        mission.write_text(
            "steps:\n  - {id: hello, step_type: create_file, parameters: {path: hello.txt, content: hi}}\n"
        )
        one = best_of(
            lambda: subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "puraify",
                    "run",
                    str(mission),
                    "--json",
                    "--workspace",
                    tmp,
                ],
                check=True,
                capture_output=True,
            ),
            5,
        )
    report.add(
        "1-step mission (`puraify run`) as a process",
        one,
        "s",
        target=0.6,
        baseline=base,
        baseline_name="python -c pass",
    )
