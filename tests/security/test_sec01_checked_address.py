"""SEC-01 for connections that are not HTTP: a database or Redis client connects to the address
the egress guard checked, never to a second lookup of the name (which a rebinding DNS server
could point inside), and over TLS still checks the certificate against the host's name."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from puraify.actions import default_registry
from puraify.actions.base import ActionContext
from puraify.actions.platform import new_tls
from puraify.errors import ActionError
from puraify.testing import CanaryListener


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for ``name``: its file, its key's file, and its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp_path / "cert.pem", tmp_path / "key.pem", pem


async def test_tls_checks_the_name_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    cert, key, pem = certificate(tmp_path, "db.test")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    try:
        trusted = new_tls("db.test", cadata=pem.decode())
        # connected by address; the certificate is checked against db.test
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trusted)
        assert await reader.read() == b"hello"
        writer.close()
        other = new_tls("other.test", cadata=pem.decode())
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=other)
    finally:
        server.close()


class Pinned:
    """The egress guard's answer for a name that no resolver knows: a rebinding DNS server
    would answer the driver's own lookup with anything; this one makes any such lookup fail."""

    def __init__(self, checked: str) -> None:
        self.checked = checked
        self.asked: list[str] = []

    async def address(self, host: str, port: int) -> str:
        self.asked.append(host)
        return self.checked


def _context(url: str, hosts: Any) -> ActionContext:
    async def vault(platform: str) -> dict[str, Any]:
        return {"type": "database_url", "url": url}

    return ActionContext(
        run_id="r",
        step_id="s",
        attempt=1,
        http=httpx.AsyncClient(),
        workspace=None,  # type: ignore[arg-type]
        commands=None,  # type: ignore[arg-type]
        vault=vault,
        hosts=hosts,
    )


@pytest.mark.parametrize(
    ("action", "params", "url"),
    [
        ("create_record", {"table": "t", "values": {"a": 1}},
         "postgresql://u:p@db.invalid:{port}/d?sslmode=require"),
        ("create_record", {"table": "t", "values": {"a": 1}},
         "postgresql://u:p@db.invalid:{port}/d"),
        ("create_record", {"table": "t", "values": {"a": 1}},
         "mysql://u:p@db.invalid:{port}/d?ssl=true"),
        ("redis_get", {"key": "k"}, "rediss://db.invalid:{port}/0"),
        ("redis_get", {"key": "k"}, "redis://db.invalid:{port}/0"),
    ],
)  # fmt: skip
async def test_the_driver_connects_to_the_address_the_guard_checked(
    action: str, params: dict[str, Any], url: str
) -> None:
    found = default_registry(entry_points=False).get(action)
    with CanaryListener() as canary:
        hosts = Pinned("127.0.0.1")
        ctx = _context(url.format(port=canary.port), hosts)
        with pytest.raises(ActionError) as failed:
            await found.run(found.parse({**params, "timeout": 2}), ctx)
        await ctx.http.aclose()
    assert hosts.asked == ["db.invalid"]
    # it reached the checked address (the canary cut it off); a lookup of db.invalid would
    # have failed before any connection
    assert canary.connections >= 1, failed.value
