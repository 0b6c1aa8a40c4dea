"""REL-07 across processes: two vaults on one store (two processes of a deployment) refresh an
expiring OAuth2 credential with one request to the provider; the one that waited reads the new
token from the store. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from puraify.store import Database
from puraify.testing import FakeOAuthServer, LocalServer
from puraify.vault.crypto import Keyring
from puraify.vault.oauth import OAuth, Provider
from puraify.vault.store import Credential, VaultStore
from tests.helpers import poll


def provider(url: str) -> Provider:
    return Provider(
        platform="fake",
        client_id="puraify-client",
        client_secret="puraify-secret",
        authorize_url=f"{url}/authorize",
        token_url=f"{url}/token",
        scopes=("chat:write",),
        token_auth_method="client_secret_basic",
        authorize_params={},
        scope_separator=" ",
    )


class Watched(VaultStore):
    """A vault that tells when it found another process holding the refresh."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = asyncio.Event()

    async def claim_refresh(self, credential: Credential, owner: str, seconds: float) -> bool:
        taken = await super().claim_refresh(credential, owner, seconds)
        if not taken:
            self.refused.set()
        return taken


async def test_rel07_two_processes_refresh_a_credential_once(database: Database) -> None:
    fake = FakeOAuthServer()
    keys = Keyring([Keyring.new_key()])
    with LocalServer(fake) as server:
        first, second = Watched(database, keys), Watched(database, keys)
        providers = {"fake": provider(server.url)}
        one, other = OAuth(first, database, providers), OAuth(second, database, providers)
        tokens = fake.issue()
        await first.put(
            "p",
            "fake",
            "oauth2",
            {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"]},
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )
        stale = await first.value("p", "fake")
        assert stale is not None and one.due(stale)
        fake.hold_refresh()
        ahead = asyncio.create_task(one.refresh(stale))

        async def requests() -> int:
            return fake.refreshes

        await poll(requests, lambda n: n == 1, what="the first process's refresh request")
        behind = asyncio.create_task(other.refresh(stale))
        await asyncio.wait_for(second.refused.wait(), timeout=30)  # it found the claim
        fake.release()
        got = await asyncio.gather(ahead, behind)
        assert fake.refreshes == 1
        assert got[0].value == got[1].value
        assert got[0].value is not None and got[0].value["access_token"] != tokens["access_token"]
        assert not one.due(got[1]) and got[1].version == stale.version + 1
