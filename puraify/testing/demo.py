"""``scripts/demo``: run the bundled missions end to end against local fakes.

Starts a scriptable receiver on 127.0.0.1 (orders as JSON, customers as CSV, a webhook that
fails twice with 503 before it accepts), then runs ``puraify/examples/demo.yaml`` with the
live view, in a workspace directory (default ``./demo-workspace``), on the embedded defaults:
the run is recorded in a SQLite store in the workspace's ``.puraify``. Then it starts a fake
Slack, a fake Notion and an SMTP server on 127.0.0.1, stores the project's credentials for
them in the vault, and runs ``puraify/examples/platforms.yaml``: a Slack message, a Notion task
and an email, each action taking its credential from the vault when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..cli.progress import LiveProgress, summary_table
from ..mission.model import MissionStatus
from ..service import Application, compose
from ..settings import Settings
from .fakes import FakeNotion, FakeSlack
from .servers import LocalServer, RecordingSink, Reply

MISSION = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"
PLATFORMS = MISSION.with_name("platforms.yaml")
BOT = "xoxb-demo-0000-" + "d" * 24
NOTION = "secret_demo_" + "n" * 32

ORDERS = {
    "orders": [
        {"id": "A-1001", "customer": "ada", "total": 120.5},
        {"id": "A-1002", "customer": "grace", "total": 80.0},
        {"id": "A-1003", "customer": "linus", "total": 42.25},
    ]
}
CUSTOMERS = "name,tier,city\nada,vip,London\ngrace,vip,Arlington\nlinus,standard,Helsinki\n"


def fake_api() -> RecordingSink:
    sink = RecordingSink()
    sink.script("/orders", Reply(200, ORDERS, delay=0.4))
    sink.script("/customers.csv", Reply(200, CUSTOMERS, delay=0.6))
    sink.fail_next(2, status=503, path="/webhook")
    sink.script("/webhook", Reply(202, {"accepted": True}, delay=0.1))
    return sink


def _application(
    workspace: Path, console: Console, **settings: Any
) -> AbstractAsyncContextManager[Application]:
    """The embedded default in ``workspace`` (local profile, SQLite in its ``.puraify``), with
    the live view."""
    return compose(
        Settings(mode="local", home=workspace / ".puraify", workspace=workspace, **settings),
        listen=None,
        environ=dict(os.environ),
        cwd=workspace,
        hooks=[LiveProgress(console)],
    )


async def run(workspace: Path, console: Console) -> int:
    sink = fake_api()
    with LocalServer(sink) as server:
        async with _application(workspace, console) as app:
            prepared = app.preparer.prepare(MISSION, context_names=["api"])
            plan = " → ".join("[" + ", ".join(level) + "]" for level in prepared.levels)
            console.print(f"[dim]plan: {escape(plan)}[/]")
            run_id, _ = await app.runs.submit(
                prepared.compiled, project_id=None, context={"api": server.url}
            )
            result = await app.runs.wait(run_id)
        assert result is not None  # the run executed here, to its end
    console.print(summary_table(result))
    webhook_calls = sink.count("/webhook")
    console.print(f"webhook deliveries: {webhook_calls} (2 failed with 503, then accepted)")
    summary = workspace / "reports" / "summary.md"
    if summary.is_file():
        console.print(f"\n[bold]{summary}[/]\n{summary.read_text()}")
    console.print(
        f"[bold]{result.status.value}[/] in {result.duration_ms / 1000:.2f}s; files in {workspace}/reports"
    )
    if result.status is not MissionStatus.COMPLETED:
        return 1
    return await platforms(workspace, console, orders=len(ORDERS["orders"]))


async def platforms(workspace: Path, console: Console, *, orders: int) -> int:
    """The platforms mission, against fakes, with credentials the demo puts in the vault."""
    from aiosmtpd.controller import Controller  # a test server: only the demo needs it

    class Inbox:
        def __init__(self) -> None:
            self.count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            self.count += 1
            return "250 accepted"

    slack, notion, inbox = FakeSlack({BOT: ("chat:write",)}), FakeNotion({NOTION}), Inbox()
    database = notion.add_database()
    smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    try:
        with LocalServer(slack) as slack_server, LocalServer(notion) as notion_server:
            async with _application(
                workspace,
                console,
                slack_base_url=f"{slack_server.url}/api",
                notion_base_url=notion_server.url,
            ) as app:
                await app.vault.put("demo", "slack", "token", BOT, scopes=["chat:write"])
                await app.vault.put("demo", "notion", "token", NOTION)
                await app.vault.put(
                    "demo",
                    "email",
                    "smtp",
                    {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                     "from_address": "puraify@example.com"},
                )  # fmt: skip
                console.print(
                    "\n[dim]vault: slack, notion and email credentials of project demo[/]"
                )
                prepared = app.preparer.prepare(PLATFORMS, context_names=["database", "orders"])
                run_id, _ = await app.runs.submit(
                    prepared.compiled,
                    project_id="demo",
                    context={"database": database, "orders": orders},
                )
                result = await app.runs.wait(run_id)
            assert result is not None
    finally:
        smtp.stop()
    console.print(summary_table(result))
    console.print(
        f"Slack received {len(slack.messages)} message(s), Notion {len(notion.pages)} page(s), "
        f"the SMTP server {inbox.count} email(s)"
    )
    console.print(f"[bold]{result.status.value}[/] in {result.duration_ms / 1000:.2f}s")
    return 0 if result.status is MissionStatus.COMPLETED else 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run puraify's bundled demo mission.")
    parser.add_argument("--workspace", type=Path, default=Path("demo-workspace"))
    args = parser.parse_args(argv)
    args.workspace.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run(args.workspace.resolve(), Console()))


if __name__ == "__main__":
    sys.exit(main())
