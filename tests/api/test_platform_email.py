"""email.send_email against a real SMTP server (aiosmtpd) on loopback: the seed name
send_email, a message delivered with its headers, SEC-11's CR/LF refusal (invalid_header),
SEC-01 for the server's host (an internal address the guard refuses), and no password over an
unencrypted connection to another machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.api.conftest import Api, ApiFactory


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (the controller cannot be given port 0)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def mail_api(make_api: ApiFactory, server: dict[str, Any]) -> tuple[Api, dict[str, str]]:
    api: Api = await make_api()
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    stored = await api.client.put(
        "/vault/credentials/a/email", json={"type": "smtp", "value": server}, headers=owner
    )
    assert stored.status_code == 200, stored.text
    return api, owner


def send(**params: Any) -> dict[str, Any]:
    base = {"to": "ops@example.com", "subject": "Nightly export", "body": "Done."}
    return {"action": "send_email", "platform": "gmail", "parameters": {**base, **params}}


async def test_an_email_is_delivered(make_api: ApiFactory, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    api, owner = await mail_api(
        make_api,
        {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "bot@example.com"},
    )
    done = await api.client.post("/execute", json=send(cc=["lead@example.com"]), headers=owner)
    assert done.status_code == 200, done.text
    assert done.json()["result"]["accepted"] == ["ops@example.com", "lead@example.com"]
    sender, recipients, content = inbox.messages[-1]
    parsed = message_from_bytes(content)
    assert sender == "bot@example.com" and recipients == ["ops@example.com", "lead@example.com"]
    assert parsed["Subject"] == "Nightly export" and parsed["Message-ID"]


async def test_sec11_a_line_break_in_a_header_is_refused(
    make_api: ApiFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    api, owner = await mail_api(
        make_api,
        {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "bot@example.com"},
    )
    for params in (
        {"subject": "hi\r\nBcc: victim@example.com"},
        {"to": "ops@example.com\nBcc: victim@example.com"},
        {"reply_to": "a@example.com\r\nX-Evil: 1"},
        {"subject": "hi\u2028Bcc: victim@example.com"},
        {"subject": "hi\x85there"},
    ):
        refused = await api.client.post("/execute", json=send(**params), headers=owner)
        assert refused.json()["error"]["code"] == "invalid_header", refused.text
    assert inbox.messages == []


async def test_sec01_the_servers_host_passes_the_egress_guard(make_api: ApiFactory) -> None:
    for host in ("169.254.169.254", "10.0.0.1", "0x7f000001"):
        api, owner = await mail_api(
            make_api, {"host": host, "port": 25, "security": "none", "from_address": "b@x.io"}
        )
        refused = await api.client.post("/execute", json=send(), headers=owner)
        assert refused.json()["error"]["code"] in ("ssrf_blocked", "connection_error"), host
        assert refused.json()["error"]["code"] == "ssrf_blocked" or host == "0x7f000001"


async def test_no_password_in_clear_to_another_machine(make_api: ApiFactory) -> None:
    api: Api = await make_api(ssrf_allow_hosts=("10.9.9.9",))  # an allowed relay elsewhere
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    server = {"host": "10.9.9.9", "port": 25, "security": "none", "username": "bot",
              "password": "pw-123456", "from_address": "b@x.io"}  # fmt: skip
    await api.client.put(
        "/vault/credentials/a/email", json={"type": "smtp", "value": server}, headers=owner
    )
    refused = await api.client.post("/execute", json=send(), headers=owner)
    assert refused.json()["error"]["code"] == "invalid_credential", refused.text
    assert "unencrypted" in refused.json()["reason"] and "pw-123456" not in refused.text
