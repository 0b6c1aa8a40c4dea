"""Output at scale, as whole processes: ``puraify run --json`` of the 10,000-step layered
mission against ``puraify validate`` of the same file (target <= 2.5x: machine output costs no
more than writing JSON), and the plain run's output into a file (target <= 3x the validation,
under 2,000 lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._util import Report, layered


def _timed(args: list[str], home: Path, cwd: Path, stdout: object) -> float:
    env = {**os.environ, "PURAIFY_HOME": str(home), "PURAIFY_LOG_LEVEL": "WARNING"}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "puraify", *args],
        cwd=cwd,
        env=env,
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - t0


def run(report: Report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        mission = base / "layered.json"
        mission.write_text(json.dumps(layered(10_000, 100)))
        home = base / "home"
        validate = min(
            _timed(["validate", str(mission)], home, base, subprocess.DEVNULL) for _ in range(2)
        )
        as_json = min(
            _timed(["run", str(mission), "--json"], home, base, subprocess.DEVNULL)
            for _ in range(2)
        )
        out = base / "out.txt"
        with open(out, "w") as fh:
            plain = _timed(["run", str(mission)], home, base, fh)
        lines = len(out.read_text().splitlines())
    report.add(
        "`run --json` of 10,000 layered steps, as a process",
        as_json,
        "s",
        target=2.5 * validate,
        baseline=validate,
        baseline_name="`validate` of the same file",
        note="target: 2.5x the validation",
    )
    report.add(
        "`run` of 10,000 layered steps into a file, as a process",
        plain,
        "s",
        target=3.0 * validate,
        baseline=validate,
        baseline_name="`validate` of the same file",
        note="target: 3x the validation",
    )
    report.add("lines written by that plain run", lines, "lines", target=2000)
