"""Run the platform fakes on 127.0.0.1 in a process of their own: ``python -m
puraify.testing.fakes --slack-token xoxb-... --notion-token secret_... --google-token ya29...``.

Prints one ``<NAME> <base URL>`` line per fake (the value for ``<platform>_base_url``), then
``READY``; stops on SIGTERM or SIGINT. Tokens are accepted with every scope the fakes check.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from ..servers import LocalServer, until_stopped
from .google import CALENDAR, GMAIL_SEND, SHEETS, FakeGoogle
from .notion import FakeNotion
from .oauth import FakeOAuthServer
from .slack import FakeSlack
from .zapier import FakeZapier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slack-token", action="append", default=[])
    parser.add_argument("--notion-token", action="append", default=[])
    parser.add_argument("--google-token", action="append", default=[])
    parser.add_argument(
        "--keep", type=int, default=None, help="Keep only this many recent messages (load runs)."
    )
    args = parser.parse_args(argv)
    stop = until_stopped()
    slack = FakeSlack({t: ("chat:write",) for t in args.slack_token}, keep=args.keep)
    notion = FakeNotion(set(args.notion_token))
    google = FakeGoogle({t: (CALENDAR, SHEETS, *GMAIL_SEND) for t in args.google_token})
    with contextlib.ExitStack() as stack:
        for name, app, suffix in (
            ("SLACK", slack, "/api"),
            ("NOTION", notion, ""),
            ("GOOGLE", google, ""),
            ("ZAPIER", FakeZapier(), ""),
            ("OAUTH", FakeOAuthServer(), ""),
        ):
            server = stack.enter_context(LocalServer(app))
            print(f"{name} {server.url}{suffix}", flush=True)
        print(f"NOTION_DATABASE {notion.add_database()}", flush=True)
        print(f"GOOGLE_SPREADSHEET {google.add_spreadsheet()}", flush=True)
        print("READY", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
