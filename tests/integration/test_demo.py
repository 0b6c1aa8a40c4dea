"""The README's promise: the bundled demos run end to end on the embedded defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "puraify.testing.demo", "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "webhook deliveries: 3" in proc.stdout
    summary = (ws / "reports/summary.md").read_text()
    assert "orders: 3" in summary and "VIP customers: ada, grace" in summary
    assert (ws / "reports/vip_customers.csv").read_text().startswith("name,tier,city")
    assert "[fetch_orders, fetch_customers]" in proc.stdout  # parallel first level
    # the platforms mission: credentials from the vault, the fakes and the SMTP server reached
    assert (
        "Slack received 1 message(s), Notion 1 page(s), the SMTP server 1 email(s)" in proc.stdout
    )
    assert "xoxb-demo" not in proc.stdout + proc.stderr
