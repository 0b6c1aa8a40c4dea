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

__all__ = ["HostGuard", "SsrfPolicy", "SsrfTransport"]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# IPv6 prefixes whose last 32 bits are an IPv4 address that the packet really reaches (besides
# IPv4-mapped, 6to4 and Teredo, which ``ipaddress`` decodes itself): NAT64's well-known prefix
# (RFC 6052), IPv4-translated (RFC 2765) and the deprecated IPv4-compatible form (RFC 4291).
_EMBEDS_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("::/96"),
)
# Refused whatever they hold: NAT64 for local use (RFC 8215), where the operator's translator
# decides the IPv4 address, and site-local addresses (deprecated, still routed inside sites).
_REFUSED_V6 = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("fec0::/10"),
)


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
        ip = _reached(ipaddress.ip_address(address.split("%", 1)[0]))
        if ip is None:
            return False
        if any(ip in net for net in self.allow_nets):
            return True
        if self.only_allowlisted:
            return bool(self.allow_loopback and ip.is_loopback)
        if ip.is_loopback:
            return self.allow_loopback
        return ip.is_global and ip not in _CGNAT and not ip.is_multicast


def _reached(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a connection to ``ip`` really reaches: an IPv6 address that embeds an IPv4
    one is judged by that IPv4 address; None for ranges refused whatever they hold."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _REFUSED_V6):
        return None
    if ip not in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
        for net in _EMBEDS_IPV4:
            if ip in net:
                return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


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


class HostGuard:
    """The same policy for what is not HTTP (an SMTP server, a database): the address to
    connect to for a host and port, checked after resolution; ``ssrf_blocked`` if refused."""

    def __init__(self, policy: SsrfPolicy) -> None:
        self.policy = policy
        self._http = SsrfTransport(policy)

    async def address(self, host: str, port: int) -> str:
        try:
            url = httpx.URL(scheme="http", host=host, port=port)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise GuardError(
                f"{host!r} is not a host name or address", code="ssrf_blocked", field="host"
            ) from None
        if self.policy.host_allowlisted(host):
            return host
        if self.policy.only_allowlisted and not _is_ip(host):
            raise _blocked(url, "host is not on the egress allowlist")
        try:
            return await self._http._resolve(url, host)
        except httpx.ConnectError as exc:
            raise GuardError(str(exc), code="connection_error", field="host") from None


@functools.lru_cache(maxsize=4096)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
