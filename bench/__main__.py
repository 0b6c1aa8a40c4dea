"""``scripts/bench``: puraify's speed and memory figures on this machine.

Every figure is printed with its target and, where one makes sense, the ratio against a
baseline measured in the same run (raw PyYAML/json, raw asyncio, raw httpx, bare Python
start-up). Targets are the issue's; a missed one is printed as MISSED, never hidden.
Run: ``scripts/bench`` (all) or some of ``scripts/bench load engine http cli store api
templates output sandbox attacks control vault platforms``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import (
    api_load,
    attacks,
    cli_output,
    cli_startup,
    control,
    engine_runs,
    http_fanout,
    load_validate,
    platforms,
    sandbox,
    store_runs,
    templates,
    vault,
)
from ._util import Report

SUITES = {
    "load": load_validate.run,
    "engine": engine_runs.run,
    "http": http_fanout.run,
    "cli": cli_startup.run,
    "store": store_runs.run,
    "api": api_load.run,
    "templates": templates.run,
    "output": cli_output.run,
    "sandbox": sandbox.run,
    "attacks": attacks.run,
    "control": control.run,
    "vault": vault.run,
    "platforms": platforms.run,
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    report = Report()
    print(f"{'benchmark':<58} {'figure':>10} {'unit':<6} {'target':<24} verdict")
    for name in chosen:
        SUITES[name](report)
    out = Path(".bench-results.json")
    report.dump(out)
    missed = [r["name"] for r in report.rows if r["ok"] is False]
    print(f"\n{len(report.rows)} figures, {len(missed)} missed target(s); JSON in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
