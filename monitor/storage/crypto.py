"""Encryption at rest: the key list and what it seals (``[storage] encryption_key`` /
``WATCHKEEPER_ENCRYPTION_KEY``).

Contract:
* a key list is comma-separated Fernet keys; the **first** encrypts, **every** key decrypts (`MultiFernet`),
  so a new key is put in front and the old ones stay until `watchkeeper db rotate-key` has re-encrypted
  every row;
* every ciphertext is stored beside the id of the key that made it (`key_id`: a short hash of the key,
  never the key), so rotation finds the rows still under an old key without decrypting them;
* a key that is not a Fernet key is refused with its position in the list, never its value; a ciphertext
  no key opens raises `Undecryptable`, which names the key id it was made with.

What is sealed: a record's texts as the `store_text` policy keeps them (`seal_texts` / `open_texts`) and a
dead letter's raw bytes. The clear columns of an encrypted record hold only redacted text.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

ENV_VAR = "WATCHKEEPER_ENCRYPTION_KEY"
CONFIG_KEY = "storage.encryption_key"


class Undecryptable(Exception):
    """No key of the list opens this ciphertext (the key it was made with was dropped too early)."""


def new_key() -> str:
    """A fresh random Fernet key (`watchkeeper db new-key`)."""
    return Fernet.generate_key().decode()


def key_id(key: str) -> str:
    """A short public name of ``key``: 16 hex digits of its SHA-256. Reveals nothing usable about it."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def parse_keys(text: str) -> list[str]:
    """The keys of a comma-separated list, checked. Raises ValueError naming the bad key's position.

    >>> len(parse_keys(new_key() + "," + new_key()))
    2
    >>> parse_keys("abc")
    Traceback (most recent call last):
    ...
    ValueError: key 1 of 1 is not a Fernet key (32 url-safe base64 bytes; `watchkeeper db new-key` makes one)
    """
    keys = [part.strip() for part in text.split(",") if part.strip()]
    if not keys:
        raise ValueError("the key list is empty")
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(f"key {i} of {len(keys)} is not a Fernet key (32 url-safe base64 bytes; "
                             "`watchkeeper db new-key` makes one)") from None
    return keys


class Cipher:
    """Encrypts with the first key, decrypts with any. Thread-safe (Fernet keeps no state)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a cipher needs at least one key")
        fernets = [Fernet(k) for k in keys]
        self._multi = MultiFernet(fernets)
        self._by_id = {key_id(k): f for k, f in zip(keys, fernets, strict=True)}
        self.key_id = key_id(keys[0])
        """Id of the key new ciphertexts are made with."""
        self.key_ids = tuple(self._by_id)

    @classmethod
    def from_text(cls, text: str | None) -> Cipher | None:
        """The cipher of a configured key list, or None when none is set (storage stays clear)."""
        return cls(parse_keys(text)) if text else None

    def __repr__(self) -> str:  # never the keys
        return f"Cipher(key_id={self.key_id!r}, keys={len(self.key_ids)})"

    def encrypt(self, data: bytes) -> bytes:
        return self._multi.encrypt(data)

    def decrypt(self, token: bytes, made_with: str | None = None) -> bytes:
        """The clear bytes of ``token``. ``made_with`` (the stored key id) picks the key directly."""
        fernet = self._by_id.get(made_with) if made_with else None
        try:
            return (fernet or self._multi).decrypt(bytes(token))
        except InvalidToken:
            if fernet is not None:  # a stored id that lies (a hand-edited row): try every key
                try:
                    return self._multi.decrypt(bytes(token))
                except InvalidToken:
                    pass
            raise Undecryptable(f"no key in {CONFIG_KEY} opens a value made with key {made_with or '?'}") from None

    def rotate(self, token: bytes, made_with: str | None = None) -> bytes:
        """``token`` re-encrypted with the first key (what `watchkeeper db rotate-key` writes)."""
        return self.encrypt(self.decrypt(token, made_with))


def seal_texts(cipher: Cipher, texts: Mapping[str, Any]) -> bytes:
    """One ciphertext for a record's texts (a JSON object: prompt, response, …, and whether they are raw)."""
    return cipher.encrypt(orjson.dumps(dict(texts)))


def open_texts(cipher: Cipher | None, token: bytes | None, made_with: str | None = None) -> dict[str, Any] | None:
    """The texts `seal_texts` sealed, or None when there is no ciphertext, no cipher, or no key of the list
    opens it (logged with the key id): readers then show the record's clear columns, which are redacted."""
    if token is None or cipher is None:
        return None
    try:
        opened: dict[str, Any] = orjson.loads(cipher.decrypt(token, made_with))
    except Undecryptable as exc:
        log.warning("sealed text shown redacted: %s", exc)
        return None
    return opened
