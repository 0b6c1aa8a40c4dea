"""email.send_email against a real SMTP server (aiosmtpd) on loopback: the seed name
send_email, a message delivered with its headers, SEC-11's CR/LF refusal (invalid_header),
SEC-01 for the server's host (an internal address the guard refuses), no password over an
unencrypted connection to another machine, a refused login, a busy server retried, a server
that never greets; and through Gmail's API with an OAuth2 credential (the fake Gmail)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.api.conftest import Api, ApiFactory
from tests.helpers import silent_server


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


class Flaky(Inbox):
    """Answers the first ``busy`` messages 451 (try again later), as a busy server does."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.busy:
            self.busy -= 1
            return "451 Requested action aborted: try again later"
        return await super().handle_DATA(server, session, envelope)


def refuse_everyone(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=False, handled=False)


@pytest.fixture
def guarded_smtp() -> Iterator[tuple[Flaky, int]]:
    """An SMTP server that asks for a login and refuses every one, or is busy twice."""
    inbox = Flaky(busy=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=refuse_everyone, auth_require_tls=False)  # fmt: skip
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_smtp_refusals_retries_and_a_timeout(
    make_api: ApiFactory, guarded_smtp: tuple[Flaky, int]
) -> None:
    _, port = guarded_smtp
    login = {"host": "127.0.0.1", "port": port, "security": "none", "username": "bot",
             "password": "pw-" + "x" * 12, "from_address": "bot@example.com"}  # fmt: skip
    api, owner = await mail_api(make_api, login)
    refused = await api.client.post("/execute", json=send(), headers=owner)
    assert refused.json()["error"]["code"] == "credential_invalid", refused.text
    busy_inbox, busy_port = guarded_smtp
    await api.client.put(
        "/vault/credentials/a/email",
        json={"type": "smtp", "value": {"host": "127.0.0.1", "port": busy_port, "security": "none",
                                        "from_address": "bot@example.com"}},
        headers=owner,
    )  # fmt: skip
    step = {"id": "mail", "step_type": "email.send_email", "retry": {"attempts": 3, "delay_ms": 10},
            "parameters": send()["parameters"]}  # fmt: skip
    done = await api.client.post(
        "/missions/execute?wait=true", json={"name": "m", "steps": [step]}, headers=owner
    )
    result = done.json()["step_results"]["mail"]
    assert result["status"] == "success" and result["attempts"] == 3, result
    assert len(busy_inbox.messages) == 1
    bad = await api.client.post(
        "/missions/validate",
        json={"name": "m", "steps": [{**step, "parameters": {"to": "ops@example.com"}}]},
        headers=owner,
    )
    assert bad.json()["valid"] is False and "subject" in bad.text
    async with silent_server() as quiet_port:  # a server that never greets
        quiet = {"host": "127.0.0.1", "port": quiet_port, "security": "none",
                 "from_address": "bot@example.com"}  # fmt: skip
        await api.client.put(
            "/vault/credentials/a/email", json={"type": "smtp", "value": quiet}, headers=owner
        )
        slow = await api.client.post("/execute", json=send(timeout=0.5), headers=owner)
    assert slow.json()["error"]["code"] == "timeout", slow.text


async def test_gmail_sends_the_same_message_through_its_api(make_api: ApiFactory) -> None:
    """An OAuth2 credential (connected Gmail) sends through users.messages.send: the raw
    MIME message with its headers, Bcc delivered by Gmail, the seed's send_email on gmail."""
    from puraify.testing import FakeGoogle, LocalServer
    from puraify.testing.fakes.google import GMAIL_SEND

    token = "ya29.gmail-" + "m" * 30
    fake = FakeGoogle({token: GMAIL_SEND[:1]})
    with LocalServer(fake) as server:
        api: Api = await make_api(gmail_base_url=server.url, ssrf_allow_hosts=())
        owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
        await api.client.put(
            "/vault/credentials/a/gmail",
            json={"type": "oauth2", "value": {"access_token": token},
                  "scopes": ["https://www.googleapis.com/auth/gmail.send"]},
            headers=owner,
        )  # fmt: skip
        done = await api.client.post(
            "/execute", json=send(bcc=["audit@example.com"], html="<p>Done.</p>"), headers=owner
        )
        assert done.status_code == 200, done.text
        result = done.json()["result"]
        assert result["id"] and result["thread_id"] and result["refused"] == {}
        assert result["accepted"] == ["ops@example.com", "audit@example.com"]
        mail = fake.mails[-1]
        assert mail["To"] == "ops@example.com" and mail["Bcc"] == "audit@example.com"
        encoded = await api.client.post(
            "/execute", json=send(subject=ENCODED_BREAKS[0]), headers=owner
        )
        assert encoded.json()["error"]["code"] == "invalid_header", encoded.text
        assert mail["Subject"] == "Nightly export" and mail["Message-ID"] == result["message_id"]
        assert mail.get_body(("html",)) is not None and token not in done.text
        header = await api.client.post(
            "/execute", json=send(subject="hi\r\nBcc: victim@example.com"), headers=owner
        )
        assert header.json()["error"]["code"] == "invalid_header"
        assert len(fake.mails) == 1


ENCODED_BREAKS = [
    "Order =?utf-8?q?=0D=0ABcc:_attacker@evil.example?=",
    "x =?utf-8?q?=0D=0AFrom:_ceo@bank.example=0D=0A=0D=0AFake_body?=",
    "=?utf-8?b?aGkNCkJjYzogYUBiLmM=?=",  # base64 of "hi\r\nBcc: a@b.c"
]


@pytest.mark.parametrize(
    "params",
    [
        *({"subject": subject} for subject in ENCODED_BREAKS),
        # after an address, the rest of an address header is written out decoded
        {"to": "ops@example.com =?utf-8?b?DQpCY2M6IHZpY3RpbUBldmlsLmV4YW1wbGU=?="},
        {"cc": "lead@example.com =?utf-8?q?=0D=0AX-Injected:_1?="},
        {"reply_to": "a@example.com =?utf-8?q?=0A=0Abody?="},
        {"from": "bot@example.com =?utf-8?b?DQpCY2M6IHZAZXZpbC5leGFtcGxl?="},
        # addresses the standard library's parser cannot take: refused, never a crash
        {"to": "a@[b"},
        {"to": "%<"},
        {"reply_to": ", :,:[[, ]"},
        {"from": "%<"},
    ],
)
async def test_sec11_a_line_break_in_an_encoded_word_is_refused(
    make_api: ApiFactory, smtp: tuple[Inbox, int], params: dict[str, str]
) -> None:
    inbox, port = smtp
    api, owner = await mail_api(
        make_api,
        {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "bot@example.com"},
    )
    refused = await api.client.post("/execute", json=send(**params), headers=owner)
    assert refused.json()["error"]["code"] == "invalid_header", refused.text
    assert inbox.messages == []


class Slow(Inbox):
    """Answers each recipient after a pause: every reply in time, the whole exchange not."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        import asyncio

        # the server's latency under test, not a wait for something: on a slower machine the
        # exchange only takes longer, so the step still ends by its timeout
        await asyncio.sleep(0.4)
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_the_timeout_bounds_the_whole_exchange(make_api: ApiFactory) -> None:
    inbox = Slow()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        api, owner = await mail_api(make_api, {"host": "127.0.0.1", "port": port,
                                               "security": "none", "from_address": "b@x.io"})  # fmt: skip
        many = [f"r{i}@example.com" for i in range(8)]
        slow = await api.client.post("/execute", json=send(to=many, timeout=1), headers=owner)
        assert slow.json()["error"]["code"] == "timeout", slow.text
        assert inbox.messages == []
    finally:
        controller.stop()
