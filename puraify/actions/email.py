"""Email: ``email.send_email``, over SMTP with ``aiosmtplib``, or through Gmail's API.

The project's ``email`` credential says how, else its ``gmail`` one (what connecting Gmail with
OAuth2 stores). An ``oauth2`` or ``token`` credential sends through Gmail's
``users.messages.send`` (the documented REST endpoint through the context's guarded client, as
the other Google actions do; base URL ``gmail_base_url``, ``https://gmail.googleapis.com``;
scope ``gmail.send``): the same message, as the raw MIME Gmail takes, its errors mapped as
Google's are. An ``smtp`` credential: ``host``, ``port``,
``username``, ``password``, ``security`` (``starttls``, the default; ``tls`` for implicit TLS,
port 465; ``none`` only for a relay on this machine) and ``from_address``. Certificates are
checked against certifi's roots; a password is never sent over a connection
that is not encrypted, except to a relay on loopback. The server's address passes the same
egress policy as HTTP (the SSRF guard) before the connection is made, and the connection goes
to the address that was checked (the certificate is still checked against the host's name).

A header value (``to``, ``cc``, ``bcc``, ``from``, ``reply_to``, ``subject``) holding CR or LF
is refused (``invalid_header``): it would let a mission write headers of its own. SMTP errors
map to: authentication refused → ``credential_invalid``; every recipient refused →
``invalid_parameters``; 4xx → ``upstream_error`` (retryable); a timeout → ``timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, ClassVar

import aiosmtplib
from pydantic import AliasChoices, Field

from ..codes import ErrorCode
from ..errors import ActionError
from .base import MISSING_OR_SCOPE, Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .google import google_call
from .platform import tls_for, too_slow, unreachable

__all__ = ["SendEmail"]

GMAIL_BASE_URL = "https://gmail.googleapis.com"

_Address = str | list[str]


def _addresses(value: _Address | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


#: the headers a message adds itself (its MIME structure)
_MIME_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})

# CR, LF and every other control or line-separating character (NEL, LS, PS)
_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


async def _connect(address: str, port: int, seconds: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(seconds):
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except (OSError, TimeoutError) as exc:
        sock.close()
        raise unreachable("the SMTP server", exc) from None
    return sock


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class SendEmail(Action):
    """Send an email through the project's SMTP server."""

    class Params(ParamsModel):
        to: _Address
        subject: str = Field(max_length=998)
        body: str = Field(default="", max_length=1_000_000)
        html: str | None = Field(default=None, max_length=1_000_000)
        cc: _Address | None = None
        bcc: _Address | None = None
        from_address: str | None = Field(
            default=None, validation_alias=AliasChoices("from", "from_address", "sender")
        )
        reply_to: str | None = None
        timeout: float = Field(default=30.0, gt=0, le=300)

    class Output(OutputModel):
        message_id: str
        accepted: list[str]
        refused: dict[str, str]
        #: through Gmail: the message's and its thread's ids
        id: str | None = None
        thread_id: str | None = None

    name = "email.send_email"
    aliases: ClassVar[tuple[str, ...]] = ("send_email",)
    platform: ClassVar[str] = "email"
    delivery: ClassVar = "unsafe"  # a message sent twice arrives twice
    credential: ClassVar = "optional"  # the email credential, else the gmail one (run)
    description = (
        "Send an email through the project's SMTP server (STARTTLS or TLS) or its Gmail account."
    )
    example: ClassVar = {"to": "ops@example.com", "subject": "Nightly export", "body": "Done."}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        server = await _credential(ctx)
        if server.get("type") in ("oauth2", "token"):
            return await _gmail(ctx, params, server)
        if server.get("type") != "smtp" or not server.get("host"):
            raise ActionError(
                "the email credential is not an smtp server (host, port, username, password) "
                "or a Gmail oauth2 token",
                code=ErrorCode.INVALID_CREDENTIAL,
            )
        host = str(server["host"])
        security = str(server.get("security") or "starttls")
        if security not in ("starttls", "tls", "none"):
            raise ActionError(
                f"security {security!r} is not starttls, tls or none",
                code=ErrorCode.INVALID_CREDENTIAL,
            )
        port = int(server.get("port") or (465 if security == "tls" else 587))
        sender = params.from_address or server.get("from_address") or server.get("username")
        message, recipients = _message(params, sender)
        if not sender:
            raise ActionError(
                "an email needs a sender (from, or the credential's from_address)",
                code=ErrorCode.INVALID_PARAMETERS,
            )
        address = await ctx.hosts.address(host, port) if ctx.hosts is not None else host
        username, password = server.get("username"), server.get("password")
        if security == "none" and password and not _loopback(address):
            raise ActionError(
                "the smtp credential would send its password unencrypted; use starttls or tls",
                code=ErrorCode.INVALID_CREDENTIAL,
            )
        # connected here, to the address the guard checked (no second lookup to rebind);
        # TLS still checks the certificate against the host's name
        sock = await _connect(address, port, params.timeout)
        try:
            async with asyncio.timeout(params.timeout):  # the whole exchange, not each reply
                refused, _ = await aiosmtplib.send(
                    message,
                    hostname=host,
                    sock=sock,
                    username=username or None,
                    password=password or None,
                    use_tls=security == "tls",
                    start_tls=security == "starttls",
                    tls_context=tls_for(host) if security != "none" else None,
                    sender=str(sender),
                    recipients=recipients,
                    timeout=params.timeout,
                )
        except aiosmtplib.SMTPAuthenticationError:
            raise ActionError(
                "the SMTP server refused the credential", code=ErrorCode.CREDENTIAL_INVALID
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise ActionError(
                f"the SMTP server refused every recipient ({len(exc.recipients)})",
                code=ErrorCode.INVALID_PARAMETERS,
            ) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise too_slow("the SMTP server") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise ActionError(
                f"the SMTP server answered {exc.code}",
                code=ErrorCode.UPSTREAM_ERROR,
                retryable=400 <= exc.code < 500,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise unreachable("the SMTP server", exc) from None
        finally:
            sock.close()
        return {
            "message_id": message["Message-ID"],
            "accepted": [r for r in recipients if r not in refused],
            "refused": {r: str(reply.message) for r, reply in refused.items()},
        }


async def _credential(ctx: ActionContext) -> Any:
    """The project's ``email`` credential, else its ``gmail`` one."""
    found = ctx.credentials.get("email")
    if found is not None:
        return found
    try:
        return await ctx.credential("gmail")
    except ActionError as exc:
        if exc.code != ErrorCode.CREDENTIAL_MISSING:
            raise
        raise ActionError(
            f"{MISSING_OR_SCOPE}: no email credential (an smtp server, or a "
            "Gmail oauth2 token) and no gmail credential for this project",
            code=ErrorCode.CREDENTIAL_MISSING,
        ) from None


def _message(
    params: Any, sender: Any, *, bcc_header: bool = False
) -> tuple[EmailMessage, list[str]]:
    """The message (its headers checked) and every recipient it goes to; ``bcc_header``
    writes Bcc into the message (Gmail delivers it and removes it)."""
    recipients = [*_addresses(params.to), *_addresses(params.cc), *_addresses(params.bcc)]
    headers = [
        ("To", ", ".join(_addresses(params.to))),
        ("Cc", ", ".join(_addresses(params.cc))),
        ("From", str(sender or "")),
        ("Reply-To", params.reply_to or ""),
        ("Subject", params.subject),
    ]
    if bcc_header:
        headers.append(("Bcc", ", ".join(_addresses(params.bcc))))
    for name, value in [*headers, *(("Bcc", a) for a in _addresses(params.bcc))]:
        _refuse_breaks(name, value)
    if not recipients:
        raise ActionError("an email needs a recipient", code=ErrorCode.INVALID_PARAMETERS)
    message = EmailMessage()
    for name, value in headers:
        if not value:
            continue
        try:
            message[name] = value
            # what the header says once its encoded words (=?utf-8?q?...?=) are decoded:
            # a line break there would be written out as a header of its own
            decoded = str(message[name])
        except Exception:  # the standard library's address parser fails on some garbage
            raise ActionError(
                f"the {name} header is not valid", code=ErrorCode.INVALID_HEADER,
                field=_field(name),
            ) from None  # fmt: skip
        _refuse_breaks(name, decoded)
    # the sender's domain, never the engine's host name (a blocking lookup, and not theirs)
    domain = str(sender or "").rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=domain or "puraify.invalid")
    message.set_content(params.body)
    if params.html is not None:
        message.add_alternative(params.html, subtype="html")
    _written_as_set(message, [name for name, value in headers if value])
    return message, recipients


def _written_as_set(message: EmailMessage, names: list[str]) -> None:
    """Check the header block as it will be sent: each header set once, and no other line
    than those and the MIME headers the message adds. An address header's text after the
    address is written out decoded, so an encoded word there could carry a line break that
    the checks on the values never see."""
    head = message.as_bytes().split(b"\n\n", 1)[0]
    written = [
        line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        for line in head.split(b"\n")
        if line.strip() and line[:1] not in (b" ", b"\t")
    ]
    wanted = sorted([*(n.lower() for n in names), "message-id"])
    if len(written) != len(set(written)) or wanted != sorted(
        w for w in written if w not in _MIME_HEADERS
    ):
        raise ActionError(
            "a header would be written as more than one header (a line break in an encoded word?)",
            code=ErrorCode.INVALID_HEADER,
        )


def _field(name: str) -> str:
    return name.lower().replace("-", "_")


def _refuse_breaks(name: str, value: str) -> None:
    if _BREAKS.search(value):
        raise ActionError(
            f"the {name} header holds a line break or a control character",
            code=ErrorCode.INVALID_HEADER,
            field=_field(name),
        )


async def _gmail(ctx: ActionContext, params: Any, credential: Any) -> dict[str, Any]:
    """Send through Gmail's ``users.messages.send``: From is the account's own unless given;
    Bcc goes in the raw message, which Gmail delivers and removes."""
    message, recipients = _message(params, params.from_address, bcc_header=True)
    raw = base64.urlsafe_b64encode(message.as_bytes()).decode()
    base = ctx.base_url("gmail", GMAIL_BASE_URL)
    sent = await google_call(
        ctx,
        credential,
        "POST",
        f"{base}/gmail/v1/users/me/messages/send",
        what="users.messages.send",
        seconds=params.timeout,
        json={"raw": raw},
    )
    return {
        "message_id": message["Message-ID"],
        "accepted": recipients,
        "refused": {},
        "id": str(sent.get("id") or "") or None,
        "thread_id": str(sent.get("threadId") or "") or None,
    }
