"""Platform actions through a real server (Engine Control's policy and the vault on): ``POST
/execute`` of ``slack.send_message`` to the fake Slack, sustained, against the same load of the
``http`` action to a bare receiver in the same run (target: 0.7x its rate or better); and a
200-step mission mixing Slack, Notion, Google Sheets and webhooks.

The fakes run in a process of their own (``python -m puraify.testing.fakes``), the receiver too
(``puraify.testing.serve``). Rate limits are off (``platform_rate_limits = {}``): Slack's own
budget (1 message a second) would measure the budget, not the engine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

from ._util import Report, puraify_json, serving
from .api_load import load

BOT = "xoxb-bench-0000-" + "b" * 24
NOTION = "secret_bench_" + "n" * 32
GOOGLE = "ya29.bench-" + "g" * 32


def _lines(proc: subprocess.Popen[str], until: str) -> dict[str, str]:
    found: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == until:
            return found
        name, _, value = line.strip().partition(" ")
        found[name] = value
    raise RuntimeError("the fakes did not start")


def run(report: Report) -> None:
    seconds = float(os.environ.get("PURAIFY_BENCH_PLATFORM_SECONDS", "10"))
    clients = 32
    with tempfile.TemporaryDirectory() as tmp:
        fakes = subprocess.Popen(
            [sys.executable, "-m", "puraify.testing.fakes", "--slack-token", BOT,
             "--notion-token", NOTION, "--google-token", GOOGLE, "--keep", "0"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        receiver = subprocess.Popen(
            [sys.executable, "-m", "puraify.testing.serve", "--keep", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            where = _lines(fakes, "READY")
            assert receiver.stdout is not None
            target = receiver.stdout.readline().split()[1]
            env = {
                **os.environ,
                "PURAIFY_HOME": str(Path(tmp) / "home"),
                "PURAIFY_MODE": "server",
                "PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.1"]',
                "PURAIFY_LOG_LEVEL": "WARNING",
                "PURAIFY_SLACK_BASE_URL": where["SLACK"],
                "PURAIFY_NOTION_BASE_URL": where["NOTION"],
                "PURAIFY_GOOGLE_SHEETS_BASE_URL": where["GOOGLE"],
                "PURAIFY_PLATFORM_RATE_LIMITS": "{}",
            }
            for platform, kind, value in (
                ("slack", "token", BOT),
                ("notion", "token", NOTION),
                ("google", "token", GOOGLE),
            ):
                subprocess.run(
                    [sys.executable, "-m", "puraify", "vault", "set", "bench", platform, "--type", kind],
                    env=env, input=value, check=True, capture_output=True, text=True,
                )  # fmt: skip
            token = puraify_json(
                "tokens", "create", "--project", "bench", "--scope", "execute", env=env
            )["token"]
            with serving(env, Path(tmp) / "server.log", "--workers", "2") as url:
                slack = {"action": "send_slack_message", "platform": "slack",
                         "parameters": {"channel": "#general", "text": "bench"}}  # fmt: skip
                bare = {"action": "http", "parameters": {"url": f"{target}/hook", "method": "POST",
                                                           "body": {"text": "bench"}}}  # fmt: skip
                uvloop.run(load(url, token, slack, 2.0, clients))  # warm-up
                uvloop.run(load(url, token, bare, 2.0, clients))
                s_count, s_errors, s_lat = uvloop.run(load(url, token, slack, seconds, clients))
                h_count, h_errors, h_lat = uvloop.run(load(url, token, bare, seconds, clients))
                steps = []
                for i in range(200):
                    which = i % 4
                    if which == 0:
                        steps.append({"id": f"s{i}", "step_type": "slack.send_message",
                                      "parameters": {"channel": "#general", "text": f"m{i}"}})  # fmt: skip
                    elif which == 1:
                        steps.append({"id": f"s{i}", "step_type": "notion.create_task",
                                      "parameters": {"database_id": where["NOTION_DATABASE"], "title": f"t{i}"}})  # fmt: skip
                    elif which == 2:
                        steps.append({"id": f"s{i}", "step_type": "google_sheets.append_row",
                                      "parameters": {"spreadsheet_id": where["GOOGLE_SPREADSHEET"], "values": [i, "x"]}})  # fmt: skip
                    else:
                        steps.append({"id": f"s{i}", "step_type": "webhook.call",
                                      "parameters": {"url": f"{target}/hook", "method": "POST", "json": {"i": i}, "timeout": 10}})  # fmt: skip
                mission = {"name": "mixed", "config": {"max_concurrent_steps": 16}, "steps": steps}
                started = time.perf_counter()
                answer = httpx.post(
                    f"{url}/missions/execute?wait=true",
                    json=mission,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=300,
                ).json()
                mixed = time.perf_counter() - started
                if "step_results" not in answer:
                    raise RuntimeError(f"the mixed mission was refused: {answer}")
                failed = sum(1 for s in answer["step_results"].values() if s["status"] != "success")
        finally:
            for proc in (fakes, receiver):
                proc.terminate()
                proc.wait(timeout=10)
    s_lat.sort()
    h_lat.sort()
    s_rate, h_rate = s_count / seconds, h_count / seconds
    report.add(
        f"POST /execute slack.send_message, {seconds:.0f} s, {clients} clients, 2 workers",
        s_rate,
        "act/s",
        note=f"http action to a bare receiver: {h_rate:.0f} act/s",
    )
    report.add(
        "  as a ratio to the http action", s_rate / h_rate, "x", target=0.7, higher_is_better=True
    )
    report.add(
        "  p50 latency",
        statistics.median(s_lat) * 1000,
        "ms",
        note=f"http: {statistics.median(h_lat) * 1000:.1f} ms",
    )
    report.add(
        "  p99 latency",
        s_lat[int(len(s_lat) * 0.99) - 1] * 1000,
        "ms",
        note=f"http: {h_lat[int(len(h_lat) * 0.99) - 1] * 1000:.1f} ms",
    )
    report.add("  errors", float(s_errors + h_errors), "count", target=0.0)
    report.add(
        "200-step mission mixing Slack, Notion, Sheets, webhooks",
        mixed,
        "s",
        note=f"{mixed / 200 * 1000:.1f} ms/step, {failed} failed",
    )
