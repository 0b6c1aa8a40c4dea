"""The SSRF guard (SEC-01): which destinations outgoing HTTP may reach.

The SSRF transport resolves the host itself, checks every address, connects to the checked
address (no second lookup for DNS rebinding to exploit), and runs again on every redirect.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable

import httpx

from ...errors import GuardError

__all__ = ["SsrfPolicy", "SsrfTransport"]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class SsrfPolicy:
    """Which destinations outgoing HTTP may reach."""

    def __init__(
        self,
        *,
        allow_hosts: Iterable[str] = (),
        allow_loopback: bool = False,
        only_allowlisted: bool = False,
    ) -> None:
        self.allow_names: set[str] = set()
        self.allow_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for host in allow_hosts:
            try:
                self.allow_nets.append(ipaddress.ip_network(host, strict=False))
            except ValueError:
                self.allow_names.add(host.lower().rstrip("."))
        self.allow_loopback = allow_loopback
        self.only_allowlisted = only_allowlisted
        # The policy never changes, so a verdict per address string can be kept (bounded):
        # parsing and range checks cost ~20 us a request otherwise.
        self.address_allowed = functools.lru_cache(maxsize=4096)(self._address_allowed)

    def host_allowlisted(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allow_names

    def _address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            elif ip.sixtofour is not None:
                ip = ip.sixtofour
            elif ip.teredo is not None:
                ip = ip.teredo[1]
        if any(ip in net for net in self.allow_nets):
            return True
        if self.only_allowlisted:
            return bool(self.allow_loopback and ip.is_loopback)
        if ip.is_loopback:
            return self.allow_loopback
        return ip.is_global and ip not in _CGNAT and not ip.is_multicast


def _blocked(url: httpx.URL, why: str) -> GuardError:
    safe = url.copy_with(username=None, password=None, query=None)
    return GuardError(f"request to {safe} refused: {why}", code="ssrf_blocked", field="url")


class SsrfTransport(httpx.AsyncBaseTransport):
    """An httpx transport that enforces ``SsrfPolicy`` on every request, redirects included."""

    def __init__(self, policy: SsrfPolicy, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpx.AsyncHTTPTransport(retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise _blocked(url, f"scheme {url.scheme!r} is not http or https")
        host = url.host
        if not host:
            raise _blocked(url, "no host")
        if self.policy.host_allowlisted(host):
            return await self.inner.handle_async_request(request)
        if self.policy.only_allowlisted and not _is_ip(host):
            raise _blocked(url, "host is not on the egress allowlist")
        address = await self._resolve(url, host)
        if address != host:
            # Connect to the address we checked; keep Host and TLS name as the caller asked.
            request.url = url.copy_with(host=address)
            if url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return await self.inner.handle_async_request(request)

    async def _resolve(self, url: httpx.URL, host: str) -> str:
        if _is_ip(host):  # a literal needs no lookup (and no trip to the resolver thread)
            if not self.policy.address_allowed(host):
                raise _blocked(url, f"{host} is not a public address")
            return host
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host.rstrip("."),
                url.port or (443 if url.scheme == "https" else 80),
                type=socket.SOCK_STREAM,
            )
        except socket.gaierror as exc:
            raise httpx.ConnectError(f"cannot resolve {host!r}: {exc.strerror}") from None
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            if not self.policy.address_allowed(address):
                raise _blocked(url, f"{host} resolves to a non-public address ({address})")
        return addresses[0]

    async def aclose(self) -> None:
        await self.inner.aclose()


@functools.lru_cache(maxsize=4096)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
