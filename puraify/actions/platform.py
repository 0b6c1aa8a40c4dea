"""What every platform action does the same way: take its bearer token from the credential the
vault gave it, and call the platform's API through the context's guarded client, a timeout or a
connection failure becoming the step's retryable ``timeout`` or ``connection_error``."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from typing import Any

import certifi
import httpx

from ..codes import ErrorCode
from ..errors import ActionError
from .base import MISSING_OR_SCOPE, ActionContext
from .content import send_bounded

__all__ = ["bearer_token", "call", "new_tls", "tls_for", "too_slow", "unreachable"]


class _NamedTLS(ssl.SSLContext):
    """A client TLS context that checks the certificate against one host name, whatever
    address the socket is connected to: a driver connects to the address the egress guard
    checked (no second lookup to rebind) and still verifies the server by its name."""

    server_name: str = ""

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)

    def wrap_socket(  # type: ignore[override]
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, self.server_name,
            session,
        )  # fmt: skip


@functools.lru_cache(maxsize=256)
def tls_for(host: str, *, verify: bool = True) -> ssl.SSLContext:
    """The TLS context for connections to ``host`` made to an address already checked:
    certificates checked against ``host`` (certifi's roots), or, with ``verify`` false,
    encryption without a check (as libpq's ``sslmode=require``). Made once per host: loading
    the roots takes ~17 ms, and a context serves any number of connections. Not to be
    changed by its callers (``new_tls`` makes one of their own)."""
    return new_tls(host, verify=verify)


def new_tls(host: str, *, verify: bool = True, cadata: str | None = None) -> ssl.SSLContext:
    """A context as ``tls_for``'s, of the caller's own; ``cadata`` adds roots (PEM)."""
    context = _NamedTLS(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = host
    context.load_verify_locations(cafile=certifi.where(), cadata=cadata)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def too_slow(service: str) -> ActionError:
    """The retryable ``timeout`` of a platform that did not answer in time."""
    return ActionError(f"{service} did not answer in time", code=ErrorCode.TIMEOUT, retryable=True)


def unreachable(service: str, exc: BaseException) -> ActionError:
    """The retryable ``connection_error`` of a platform that could not be reached."""
    return ActionError(
        f"{service} could not be reached ({type(exc).__name__})",
        code=ErrorCode.CONNECTION_ERROR,
        retryable=True,
    )


def bearer_token(credential: Mapping[str, Any], platform: str) -> str:
    """The token of a ``token`` or ``oauth2`` credential."""
    token = credential.get("token") or credential.get("access_token")
    if not isinstance(token, str) or not token:
        raise ActionError(
            f"{MISSING_OR_SCOPE}: the {platform} credential holds no token",
            code=ErrorCode.CREDENTIAL_MISSING,
        )
    return token


async def call(
    ctx: ActionContext, service: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """``method url`` through the guarded client (``kwargs`` as httpx's ``build_request``
    takes them); the answer is read within ``http_max_response_bytes`` once decoded, as the
    ``http`` action's is, and comes back decoded."""
    cap = ctx.limit("http_max_response_bytes", 10 * 1024 * 1024)
    try:
        request = ctx.http.build_request(method, url, **kwargs)
        return await send_bounded(ctx.http, request, cap, what=f"{service}'s answer")
    except httpx.TimeoutException:
        raise too_slow(service) from None
    except httpx.HTTPError as exc:
        raise unreachable(service, exc) from None
