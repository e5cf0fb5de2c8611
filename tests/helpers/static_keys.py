"""A key provider with fixed keys in memory, for tests that need keys but not Key Vault."""

from __future__ import annotations

import os


class StaticKeyProvider:
    """`crypto_converter.KeyProvider` over a dict of keys; the first one given is current."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = dict(keys)
        self.current_key_id = next(iter(keys))

    @classmethod
    def random(cls, key_id: str = "test-key", size: int = 32) -> StaticKeyProvider:
        return cls({key_id: os.urandom(size)})

    async def current_key(self) -> tuple[str, bytes]:
        return self.current_key_id, self.keys[self.current_key_id]

    async def key_for(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise LookupError(f"no key with id {key_id!r}") from None
