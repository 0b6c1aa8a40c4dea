"""A fake OAuth2 authorization server (RFC 6749, PKCE as RFC 7636), real HTTP on loopback.

- ``GET /authorize``: checks ``response_type=code``, the client, the redirect URI and an S256
  ``code_challenge``; approves at once (the user said yes) by redirecting to the redirect URI
  with ``code`` and ``state``, or with ``error=access_denied`` after ``deny_next()``.
- ``POST /token`` (form-encoded, client authenticated by HTTP Basic or in the body):
  ``authorization_code`` (code unused, unexpired, same redirect URI, verifier matching the
  challenge) and ``refresh_token`` grants; errors as the RFC's JSON bodies (``invalid_client``
  401, ``invalid_grant`` and ``invalid_request`` 400). Refresh tokens are rotated when
  ``rotate_refresh`` is set. ``revoke(refresh_token)`` makes a refresh token's next use
  ``invalid_grant``; ``hold_refresh()`` keeps refresh requests waiting until ``release()``;
  ``fail_refresh(n)`` answers the next ones 500.
- ``GET /resource``: 200 for a live access token sent as a Bearer token, 401 otherwise.

It counts what it received (``token_requests``, ``refreshes``) so tests can assert how many
requests a behaviour cost.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..servers import Receive, Scope, Send, read_request, send_json

__all__ = ["FakeOAuthServer"]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    expires: float
    used: bool = False


class FakeOAuthServer:
    """The authorization server of one client (``client_id``/``client_secret``)."""

    def __init__(
        self,
        *,
        client_id: str = "puraify-client",
        client_secret: str = "puraify-secret",  # noqa: S107 (a fake's own client)
        expires_in: int = 3600,
        scope: str = "chat:write",
        rotate_refresh: bool = False,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.scope = scope
        self.rotate_refresh = rotate_refresh
        self.codes: dict[str, _Code] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> scope
        self.access_tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.token_requests = 0
        self.refreshes = 0
        self._deny = False
        self._refresh_failures: list[tuple[int, bool]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()

    # -- scripting ---------------------------------------------------------------------------

    def deny_next(self) -> None:
        """The next authorization is refused by the user (``error=access_denied``)."""
        self._deny = True

    def revoke(self, refresh_token: str | None = None) -> None:
        """Revoke one refresh token (all of them when none is named)."""
        with self._lock:
            if refresh_token is None:
                self.refresh_tokens.clear()
            else:
                self.refresh_tokens.pop(refresh_token, None)

    def fail_refresh(self, times: int, status: int = 500, *, echo: bool = False) -> None:
        """Answer the next ``times`` refresh requests with ``status`` (a provider's outage);
        ``echo``: quoting the refresh token it was sent in its error, as some providers do."""
        self._refresh_failures = [(status, echo)] * times

    def hold_refresh(self) -> None:
        """Keep refresh requests waiting until ``release()``."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def issue(self, scope: str | None = None) -> dict[str, Any]:
        """Tokens as the token endpoint would grant them (a test's starting point)."""
        with self._lock:
            return self._grant(scope if scope is not None else self.scope, refresh=None)

    # -- protocol ------------------------------------------------------------------------------

    def _grant(self, scope: str, refresh: str | None) -> dict[str, Any]:
        access = "fake-at-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = time.monotonic() + self.expires_in
        if refresh is None or self.rotate_refresh:
            if refresh is not None:
                self.refresh_tokens.pop(refresh, None)
            refresh = "fake-rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = scope
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh,
            "scope": scope,
        }

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect.startswith("http"):
            return 400, {}, {"error": "invalid_request", "error_description": "bad client"}
        params: dict[str, str] = {"state": query.get("state", "")}
        if self._deny:
            self._deny = False
            params["error"] = "access_denied"
        elif query.get("response_type") != "code":
            params["error"] = "unsupported_response_type"
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            params["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self.codes[code] = _Code(
                    self.client_id,
                    redirect,
                    query["code_challenge"],
                    query.get("scope") or self.scope,
                    time.monotonic() + 600,
                )
            params["code"] = code
        parts = urlsplit(redirect)
        joined = "&".join(p for p in (parts.query, urlencode(params)) if p)
        location = urlunsplit((parts.scheme, parts.netloc, parts.path, joined, ""))
        return 302, {"location": location}, b""

    def _client_ok(self, headers: dict[str, str], form: dict[str, str]) -> bool:
        basic = headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                pair = base64.b64decode(basic[6:]).decode()
            except ValueError:
                return False
            given_id, _, given_secret = pair.partition(":")
        else:
            given_id, given_secret = form.get("client_id", ""), form.get("client_secret", "")
        return secrets.compare_digest(given_id, self.client_id) and secrets.compare_digest(
            given_secret, self.client_secret
        )

    async def _token(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.token_requests += 1
        if not self._client_ok(headers, form):
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            with self._lock:
                found = self.codes.get(form.get("code", ""))
                verifier = form.get("code_verifier", "")
                challenge = (
                    base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                    .rstrip(b"=")
                    .decode()
                )
                if (
                    found is None
                    or found.used
                    or found.expires < time.monotonic()
                    or found.redirect_uri != form.get("redirect_uri")
                    or not secrets.compare_digest(challenge, found.challenge)
                ):
                    return 400, {"error": "invalid_grant"}
                found.used = True
                return 200, self._grant(found.scope, refresh=None)
        if grant == "refresh_token":
            with self._lock:
                self.refreshes += 1
                failure = self._refresh_failures.pop(0) if self._refresh_failures else None
            if failure is not None:
                status, echo = failure
                said = f"refresh_token {form.get('refresh_token')} is malformed" if echo else None
                return status, {"error": "temporarily_unavailable", "error_description": said}
            await asyncio.get_running_loop().run_in_executor(None, self._released.wait)
            with self._lock:
                token = form.get("refresh_token", "")
                scope = self.refresh_tokens.get(token)
                if scope is None:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "the refresh token was revoked",
                    }
                return 200, self._grant(scope, refresh=token)
        return 400, {"error": "unsupported_grant_type"}

    def _resource(self, headers: dict[str, str]) -> tuple[int, Any]:
        kind, _, token = headers.get("authorization", "").partition(" ")
        expiry = self.access_tokens.get(token) if kind.lower() == "bearer" else None
        if expiry is None or expiry < time.monotonic():
            return 401, {"error": "invalid_token"}
        return 200, {"ok": True}

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers, body = await read_request(scope, receive)
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        path, method = scope["path"], scope["method"]
        extra: dict[str, str] = {}
        if path == "/authorize" and method == "GET":
            status, extra, payload = self._authorize(query)
        elif path == "/token" and method == "POST":
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            status, payload = await self._token(headers, form)
            extra = {"cache-control": "no-store"}
        elif path == "/resource":
            status, payload = self._resource(headers)
        else:
            status, payload = 404, {"error": "not_found"}
        await send_json(send, status, payload, [(k.encode(), v.encode()) for k, v in extra.items()])
