"""SEC-08: the vault's sealing on SQLite and PostgreSQL: round trips (hypothesis), bit flips,
row swaps, stale versions, rotation, a missing or wrong key; no value in the database file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from puraify.errors import VaultError
from puraify.store import Database
from puraify.store.tables import vault_credentials
from puraify.vault.crypto import Keyring, aad
from puraify.vault.store import VaultStore


def keyring() -> Keyring:
    return Keyring([Keyring.new_key()])


@settings(max_examples=200, deadline=None)
@given(
    plaintext=st.binary(max_size=2048),
    record=st.text(min_size=1, max_size=20),
    version=st.integers(min_value=1, max_value=10**6),
)
def test_sec08_seal_and_open_round_trip_and_bind_their_row(
    plaintext: bytes, record: str, version: int
) -> None:
    keys = keyring()
    bound = aad(record, "p", "slack", "", version)
    key_id, sealed = keys.seal(plaintext, bound)
    assert keys.open(key_id, sealed, bound) == plaintext
    assert len(plaintext) < 16 or plaintext not in sealed  # short ones occur by chance
    for other in (
        aad(record, "q", "slack", "", version),
        aad(record, "p", "slack", "", version + 1),
    ):
        with pytest.raises(VaultError) as caught:
            keys.open(key_id, sealed, other)
        assert caught.value.code == "credential_undecryptable"


@settings(max_examples=100, deadline=None)
@given(flip=st.integers(min_value=0, max_value=10_000))
def test_sec08_any_flipped_bit_is_refused(flip: int) -> None:
    keys = keyring()
    bound = aad("r", "p", "slack", "", 1)
    key_id, sealed = keys.seal(b"xoxb-secret", bound)
    bit = flip % (len(sealed) * 8)
    broken = bytearray(sealed)
    broken[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VaultError):
        keys.open(key_id, bytes(broken), bound)


async def test_sec08_round_trip_user_over_project_and_no_value_at_rest(
    database: Database, tmp_path: Path
) -> None:
    store = VaultStore(database, keyring())
    canary = "xoxb-canary-" + os.urandom(6).hex()
    await store.put("p", "slack", "token", canary, scopes=["chat:write"])
    await store.put("p", "slack", "token", canary + "-alice", user_id="alice")
    project = await store.value("p", "slack")
    assert project is not None and project.value == {"token": canary}
    assert project.scopes == ("chat:write",) and project.user_id is None
    alice = await store.value("p", "slack", user_id="alice")
    assert alice is not None and alice.value == {"token": canary + "-alice"}
    bob = await store.value("p", "slack", user_id="bob")  # no own credential: the project's
    assert bob is not None and bob.value == {"token": canary}
    assert await store.value("p", "gmail") is None
    listed = await store.list("p")
    assert all(c.value is None for c in listed) and canary not in repr(listed)
    async with database.engine.connect() as conn:
        rows = (await conn.execute(select(vault_credentials))).all()
    dump = repr([tuple(r) for r in rows]).encode()
    assert canary.encode() not in dump and base64.b64encode(canary.encode()) not in dump


async def test_sec08_a_swapped_or_stale_row_does_not_open(database: Database) -> None:
    store = VaultStore(database, keyring())
    await store.put("a", "slack", "token", "token-of-a")
    await store.put("b", "slack", "token", "token-of-b")
    async with database.engine.begin() as conn:
        rows = {r.project_id: r for r in (await conn.execute(select(vault_credentials))).all()}
        await conn.execute(  # b's sealed value copied into a's row
            update(vault_credentials)
            .where(vault_credentials.c.id == rows["a"].id)
            .values(sealed=rows["b"].sealed, key_id=rows["b"].key_id)
        )
    with pytest.raises(VaultError) as caught:
        await store.value("a", "slack")
    assert caught.value.code == "credential_undecryptable"
    old = rows["b"].sealed
    await store.put("b", "slack", "token", "token-of-b-2")  # version 2
    async with database.engine.begin() as conn:
        await conn.execute(
            update(vault_credentials)
            .where(vault_credentials.c.project_id == "b")
            .values(sealed=old)  # version 1's value put back
        )
    with pytest.raises(VaultError):
        await store.value("b", "slack")


async def test_sec08_rotation_and_a_missing_key(database: Database, tmp_path: Path) -> None:
    key_file = tmp_path / "vault.key"
    first = Keyring.load(env_value=None, key_file=key_file, create=True)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    store = VaultStore(database, first)
    for i in range(5):
        await store.put(f"p{i}", "slack", "token", f"t{i}")
    key_id, key = Keyring.new_key()
    wider = Keyring([*first.keys.items(), (key_id, key)])
    assert await store.reseal(wider) == 5
    assert await store.keys_in_use() == {key_id}
    only_new = VaultStore(database, Keyring([(key_id, key)]))  # the old key removed
    for i in range(5):
        found = await only_new.value(f"p{i}", "slack")
        assert found is not None and found.value == {"token": f"t{i}"}
    stranger = VaultStore(database, keyring())  # a wrong key: an error, never an empty value
    with pytest.raises(VaultError) as caught:
        await stranger.value("p0", "slack")
    assert caught.value.code == "vault_key_missing"
    with pytest.raises(VaultError) as missing:
        Keyring.load(env_value=None, key_file=tmp_path / "none.key", create=False)
    assert missing.value.code == "vault_key_missing"
    for bad in ("nocolon", "k:short", ":" + "A" * 43):
        with pytest.raises(VaultError):
            Keyring.load(env_value=bad, key_file=key_file, create=False)
    env = "k1:" + base64.urlsafe_b64encode(b"\x01" * 32).decode().rstrip("=")
    assert Keyring.load(env_value=env, key_file=tmp_path / "none.key", create=False).current == "k1"


@pytest.mark.parametrize(
    ("kind", "value"),
    [("nope", "x"), ("token", ""), ("basic", {"user": "x"}), ("token", {})],
)
async def test_values_a_type_cannot_hold_are_refused(
    database: Database, kind: str, value: Any
) -> None:
    with pytest.raises(VaultError) as caught:
        await VaultStore(database, keyring()).put("p", "x", kind, value)
    assert caught.value.code == "invalid_credential"


async def test_opened_credentials_are_kept_for_their_time_and_forgotten_on_a_change(
    database: Database,
) -> None:
    from tests.helpers import ManualClock

    clock = ManualClock()
    store = VaultStore(database, keyring(), cache_seconds=5.0, clock=clock.monotonic)
    await store.put("p", "slack", "token", "one")
    first = await store.value("p", "slack")
    assert first is not None and first.value == {"token": "one"}
    other = VaultStore(database, store.keyring)  # another process changes it
    await other.put("p", "slack", "token", "two")
    kept = await store.value("p", "slack")
    assert kept is not None and kept.value == {"token": "one"}  # within its time
    clock.advance(5.1)
    fresh = await store.value("p", "slack")
    assert fresh is not None and fresh.value == {"token": "two"}
    await store.put("p", "slack", "token", "three")  # a change made here: at once
    now = await store.value("p", "slack")
    assert now is not None and now.value == {"token": "three"}
    await store.delete("p", "slack")
    assert await store.value("p", "slack") is None
