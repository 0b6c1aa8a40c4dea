"""SEC-01: the http step refuses internal destinations in every spelling, on every redirect."""

from __future__ import annotations

from pathlib import Path

import pytest

from puraify.mission.model import StepStatus
from puraify.testing import CanaryListener, LocalServer, RecordingSink, Reply
from tests.conftest import EngineFactory, run_text


def http_step(url: str) -> str:
    return f"steps:\n  - id: call\n    step_type: http\n    parameters: {{url: '{url}'}}\n"


def server_engine(make_engine: EngineFactory, **overrides: object):  # type: ignore[no-untyped-def]
    """Server-mode guard: loopback and private ranges denied."""
    values = {
        "egress_only_allowlisted": False,
        "ssrf_allow_loopback": False,
        "mode": "server",
        "command_enabled": True,
    }
    values.update(overrides)
    return make_engine(**values)


SPELLINGS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://localhost.:{port}/",
    "http://2130706433:{port}/",  # decimal
    "http://0x7f000001:{port}/",  # hex
    "http://0177.0.0.1:{port}/",  # octal
    "http://0x7f.0.0.1:{port}/",
    "http://127.1:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://user:pass@127.0.0.1:{port}/",
    "http://example.com@127.0.0.1:{port}/",
    "http://0.0.0.0:{port}/",
    "http://[::]:{port}/",
]


@pytest.mark.parametrize("template", SPELLINGS)
async def test_sec01_loopback_spellings_blocked(make_engine: EngineFactory, template: str) -> None:
    engine = server_engine(make_engine)
    with CanaryListener() as canary:
        result = await run_text(engine, http_step(template.format(port=canary.port)))
    step = result.step("call")
    assert step.status is StepStatus.FAILED
    assert step.error is not None and step.error.code == "ssrf_blocked", step.error
    assert canary.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::1]/",
        "http://224.0.0.1/",
    ],
)
async def test_sec01_private_linklocal_cgnat_metadata_blocked(
    make_engine: EngineFactory, url: str
) -> None:
    engine = server_engine(make_engine)
    result = await run_text(engine, http_step(url))
    assert result.step("call").error.code == "ssrf_blocked"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 well-known prefix: 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # ... 169.254.169.254
        "64:ff9b::a00:1",  # ... 10.0.0.1
        "::7f00:1",  # IPv4-compatible (deprecated): 127.0.0.1
        "::a9fe:a9fe",  # ... 169.254.169.254
        "::ffff:0:a00:1",  # IPv4-translated: 10.0.0.1
        "::ffff:0:7f00:1",  # ... 127.0.0.1
        "::ffff:a9fe:a9fe",  # IPv4-mapped: 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "64:ff9b:1::808:808",  # NAT64 for local use: the translator decides, refused
        "fec0::1",  # site-local (deprecated)
    ],
)
def test_sec01_ipv6_forms_are_judged_by_the_ipv4_they_embed(address: str) -> None:
    from puraify.runtime.guards.ssrf import SsrfPolicy

    assert SsrfPolicy().address_allowed(address) is False
    assert SsrfPolicy(allow_loopback=True).address_allowed(address) is ("7f00:1" in address)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:808:808", "2606:4700::1111"])
def test_sec01_ipv6_forms_of_public_addresses_stay_reachable(address: str) -> None:
    from puraify.runtime.guards.ssrf import SsrfPolicy

    assert SsrfPolicy().address_allowed(address) is True


async def test_sec01_a_nat64_url_to_a_private_address_is_refused(
    make_engine: EngineFactory,
) -> None:
    engine = server_engine(make_engine)
    result = await run_text(engine, http_step("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"))
    assert result.step("call").error.code == "ssrf_blocked"  # type: ignore[union-attr]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1/", "ftp://example.com/"])
async def test_sec01_only_http_and_https(make_engine: EngineFactory, url: str) -> None:
    engine = server_engine(make_engine)
    result = await run_text(engine, http_step(url))
    assert result.step("call").error.code in ("ssrf_blocked", "connection_error")  # type: ignore[union-attr]
    assert result.step("call").status is StepStatus.FAILED


async def test_sec01_redirect_to_internal_is_blocked(make_engine: EngineFactory) -> None:
    # the "public" hop is allowlisted by address; it redirects to a loopback canary
    with CanaryListener() as canary:
        redirector = RecordingSink()
        redirector.script("/go", Reply(302, "", {"Location": f"http://127.0.0.2:{canary.port}/"}))
        with LocalServer(redirector) as server:
            engine = server_engine(make_engine, ssrf_allow_hosts=["127.0.0.1"])
            result = await run_text(engine, http_step(f"{server.url}/go"))
        assert redirector.count("/go") == 1
        assert result.step("call").error.code == "ssrf_blocked"  # type: ignore[union-attr]
        assert canary.connections == 0


async def test_sec01_allowlisted_host_still_works(make_engine: EngineFactory) -> None:
    receiver = RecordingSink()
    with LocalServer(receiver) as server:
        engine = server_engine(make_engine, ssrf_allow_hosts=["127.0.0.1"])
        result = await run_text(engine, http_step(f"{server.url}/ok"))
    assert result.step("call").status is StepStatus.SUCCESS
    assert receiver.count("/ok") == 1


async def test_sec01_egress_allowlist_only_blocks_before_dns(make_engine: EngineFactory) -> None:
    engine = make_engine()  # tests run with egress limited to loopback
    result = await run_text(engine, http_step("https://httpbin.org/get"))
    error = result.step("call").error
    assert error is not None and error.code == "ssrf_blocked" and "allowlist" in error.message


async def test_sec01_client_ignores_proxy_environment(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with CanaryListener() as canary:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{canary.port}")
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{canary.port}")
        receiver = RecordingSink()
        with LocalServer(receiver) as server:
            engine = make_engine()
            result = await run_text(engine, http_step(f"{server.url}/direct"))
        assert result.step("call").status is StepStatus.SUCCESS
        assert canary.connections == 0


async def test_sec01_schema_references_are_never_fetched(
    make_engine: EngineFactory, workspace: Path, tmp_path: Path
) -> None:
    """``validate_schema`` resolves only references inside the schema: an http(s) or file
    ``$ref`` is refused, with 0 connections at a canary and no file read outside the jail."""
    secret = tmp_path / "outside.json"
    secret.write_text('{"type": "object"}')
    with CanaryListener() as canary:
        for ref in (
            f"http://127.0.0.1:{canary.port}/x",
            f"file://{secret}",
            f"file://{secret}#/type",
        ):
            text = (
                "steps:\n  - id: s\n    step_type: validate_schema\n"
                f"    parameters: {{data: {{a: 1}}, schema: {{$ref: '{ref}'}}}}\n"
            )
            step = (await run_text(make_engine(), text)).step("s")
            assert step.error is not None and step.error.code == "invalid_schema", (ref, step)
        assert canary.connections == 0
