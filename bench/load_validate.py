"""load + validate + plan for 100, 1,000 and 10,000 steps (targets 2 ms, -, 250 ms)."""

from __future__ import annotations

import json

import yaml

from ._util import Report, best_of, engine, layered

TARGETS_MS = {100: 2.0, 1000: None, 10_000: 250.0}


def run(report: Report) -> None:
    eng = engine()
    for n, target in TARGETS_MS.items():
        doc = layered(n, width=max(1, n // 20))
        repeat = 30 if n <= 1000 else 5
        for fmt, text in (
            ("json", json.dumps(doc)),
            ("yaml", yaml.safe_dump(doc, sort_keys=False)),
        ):
            if fmt == "json":
                base = best_of(lambda t=text: json.loads(t), repeat)
                base_name = "json.loads"
            else:
                base = best_of(lambda t=text: yaml.load(t, Loader=yaml.CSafeLoader), repeat)
                base_name = "yaml.CSafeLoader"
            ours = best_of(lambda t=text: eng.prepare(t), repeat)
            report.add(
                f"load+validate+plan {n:>6} steps ({fmt})",
                ours * 1000,
                "ms",
                target=target,
                baseline=base * 1000,
                baseline_name=base_name,
            )
