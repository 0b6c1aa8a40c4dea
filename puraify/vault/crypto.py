"""The vault's keys and how a value is sealed.

Each value is sealed with AES-256-GCM (``cryptography``) under the current key, with a random
96-bit nonce per write and associated data naming the credential's row (id, project, platform,
user, version): a ciphertext copied to another row, or left behind by an older version, does
not open. Keys have ids; a sealed value records the id of its key, so that ``rotate`` can
re-seal every value under a new key and the old one can then be dropped.

Where the keys come from: ``PURAIFY_MASTER_KEY`` (``id:base64url-key``, several separated by
commas, the last one current), else the key file ``<home>/vault.key`` (one ``id:key`` per
line, mode 0600), which ``Keyring.load`` makes with one new key when it does not exist and
``create`` is true (``puraify init``, or the first credential written).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import VaultError

__all__ = ["Keyring", "aad"]

_NONCE = 12


def aad(record_id: str, project: str, platform: str, user: str, version: int) -> bytes:
    """The associated data that binds a sealed value to its row."""
    return "\x1f".join((record_id, project, platform, user, str(version))).encode()


def _decode(text: str, where: str) -> tuple[str, bytes]:
    key_id, sep, encoded = text.strip().partition(":")
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        key = b""
    if not sep or not key_id or len(key) != 32:
        raise VaultError(
            f"{where} holds a key that is not `id:base64url` of 32 bytes", code="vault_key_missing"
        )
    return key_id, key


class Keyring:
    """The vault's keys (id -> 32 bytes); ``current`` seals, any opens what it sealed."""

    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        self.keys = dict(keys)
        if not self.keys:
            raise VaultError("the vault has no key", code="vault_key_missing")
        self.current = list(self.keys)[-1]

    @classmethod
    def load(cls, *, env_value: str | None, key_file: Path, create: bool) -> Keyring:
        """The keys from ``env_value`` (``PURAIFY_MASTER_KEY``) or ``key_file``."""
        if env_value:
            return cls(_decode(part, "PURAIFY_MASTER_KEY") for part in env_value.split(","))
        try:
            lines = key_file.read_text().splitlines()
        except FileNotFoundError:
            if not create:
                raise VaultError(
                    f"the vault's key file {key_file} does not exist: `puraify init` makes it, "
                    "or set PURAIFY_MASTER_KEY",
                    code="vault_key_missing",
                ) from None
            keyring = cls([cls.new_key()])
            keyring.save(key_file)
            return keyring
        return cls(_decode(line, str(key_file)) for line in lines if line.strip())

    @staticmethod
    def new_key() -> tuple[str, bytes]:
        return secrets.token_hex(4), AESGCM.generate_key(bit_length=256)

    def save(self, key_file: Path) -> None:
        """Write the keys to ``key_file`` (mode 0600, replaced whole)."""
        key_file.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(
            f"{key_id}:{base64.urlsafe_b64encode(key).decode().rstrip('=')}\n"
            for key_id, key in self.keys.items()
        )
        partial = key_file.with_name(key_file.name + ".new")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, key_file)

    def seal(self, plaintext: bytes, associated: bytes) -> tuple[str, bytes]:
        """``(key id, nonce + ciphertext)`` under the current key."""
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext, associated)
        return self.current, nonce + sealed

    def open(self, key_id: str, blob: bytes, associated: bytes) -> bytes:
        """The plaintext; ``VaultError`` if the key is gone or the value was not sealed for
        this row (moved, altered, or of another version)."""
        key = self.keys.get(key_id)
        if key is None:
            raise VaultError(
                f"the credential was sealed with key {key_id!r}, which this vault does not have",
                code="vault_key_missing",
            )
        try:
            return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], associated)
        except (InvalidTag, ValueError):
            raise VaultError(
                "the credential does not open: it was altered, or moved from another row",
                code="credential_undecryptable",
            ) from None
