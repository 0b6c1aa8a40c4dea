"""A shared budget: two server processes (`serve --workers 2`) with a 10/s budget for one Slack
credential, shared through Redis, together post at most 10 messages a second to the fake Slack,
give or take one burst: the `limits` library counts by whole seconds, so a window of W seconds
that straddles them may see up to 10 x W + 10. Two budgets of their own would let 20 a second
through: more than 10 x W + 10 over two seconds and more."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from puraify.testing import FakeSlack, LocalServer
from tests.api.test_server import Server
from tests.helpers import service_or_skip

REDIS = ("127.0.0.1", 6379)


def redis_or_skip() -> None:
    service_or_skip("Redis", REDIS)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_processes_share_one_budget_for_a_credential(tmp_path: Path) -> None:
    redis_or_skip()
    bot = "xoxb-budget-" + os.urandom(12).hex()  # a new credential: a budget of its own
    fake = FakeSlack({bot: ("chat:write",)})
    with LocalServer(fake) as slack:
        server = Server(
            tmp_path / "home",
            {
                "PURAIFY_SLACK_BASE_URL": f"{slack.url}/api",
                "PURAIFY_REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
                "PURAIFY_PLATFORM_RATE_LIMITS": '{"slack": "10/second"}',
                "PURAIFY_EXECUTE_TIMEOUT_SECONDS": "60",
            },
        )
        stored = subprocess.run(
            [sys.executable, "-m", "puraify", "vault", "set", "p", "slack", "--type", "token"],
            input=bot,
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stored.returncode == 0, stored.stderr
        token = server.token("p", ("execute",))
        server.start(workers=2)
        try:
            body = {"action": "send_slack_message", "platform": "slack",
                    "parameters": {"channel": "#general", "text": "budget"}}  # fmt: skip

            def post(_: int) -> int:
                with httpx.Client(timeout=60) as client:  # a connection each: both workers
                    answer = client.post(
                        f"{server.url}/execute",
                        json=body,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    return answer.status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = list(pool.map(post, range(60)))
        finally:
            server.stop()
    assert statuses == [200] * 60
    assert len(fake.messages) == 60
    stamps = sorted(fake.times)
    for window in (1.0, 2.0, 3.0, 4.0):
        busiest = max(sum(1 for t in stamps if start <= t < start + window) for start in stamps)
        assert busiest <= 10 * window + 10, (window, busiest)
