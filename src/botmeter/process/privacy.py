"""User identifiers are stored as a keyed hash, never in the clear (unless hashing is turned off).

A keyed hash (HMAC-SHA256) rather than a plain one: phone numbers are few enough that an
unkeyed hash can be reversed by trying them all. The key comes from the configuration or is
generated once and kept beside the store (``<store>.key``, readable by its owner only), so the
same user gets the same id across restarts and an admin's number can be matched by hashing it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from ..exceptions import ConfigError

_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_PHONE = re.compile(r"\+?\d{6,15}")
# Channels that address a person by phone number: Twilio's "whatsapp:+1...", "sms:"/"tel:" URIs.
_CHANNEL_PREFIX = re.compile(r"(?i)(?:whatsapp|sms|smsto|mms|tel|rcs):\s*")
_CACHE_LIMIT = 200_000


def phone_number_in(value: object) -> str | None:
    """The phone number ``value`` is (``"+1 (555) 123-4567"``, ``"whatsapp:+15551234567"``), compact,
    or None when it is not one."""
    if value is None:
        return None
    text = str(value).strip()
    prefix = _CHANNEL_PREFIX.match(text)
    if prefix:
        text = text[prefix.end() :]
    compact = _PHONE_PUNCTUATION.sub("", text)
    return compact if _PHONE.fullmatch(compact) else None


def normalise_user(user: str | int) -> str:
    """One spelling per person: "+1 (555) 123-4567", "+15551234567" and "whatsapp:+15551234567" are
    the same user."""
    return phone_number_in(user) or str(user).strip()


class UserHasher:
    """Maps user identifiers to stable keyed hashes, with bounded caches for the writer's batches."""

    __slots__ = ("_cache", "_key", "_keyed", "_stored_ids")

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("hash key must be at least 16 bytes")
        self._key = key
        # Keyed once: each hash copies it, a third of the cost of keying a new HMAC every time.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        self._cache: dict[object, str] = {}
        # Conversation ids as stored (hashed when a phone number): the same ones recur batch after batch.
        self._stored_ids: dict[object, object] = {}

    def hash(self, user: str | int) -> str:
        cached = self._cache.get(user)
        if cached is not None:
            return cached
        keyed = self._keyed.copy()
        keyed.update(normalise_user(user).encode())
        digest = keyed.hexdigest()[:20]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[user] = digest
        return digest

    def hash_phone_like(self, values: list) -> list:
        """Hashes the values that are phone numbers (a bot may use one as a conversation id)."""
        seen = self._stored_ids
        out = []
        append = out.append
        for value in values:
            mapped = seen.get(value)
            if mapped is None:
                mapped = self.hash(value) if phone_number_in(value) else value
                if len(seen) >= _CACHE_LIMIT:
                    seen.clear()
                seen[value] = mapped
            append(mapped)
        return out

    def hash_column(self, users: list) -> list:
        cache = self._cache
        out = []
        append = out.append
        for user in users:
            if user is None:
                append(None)
            else:
                hashed = cache.get(user)
                append(hashed if hashed is not None else self.hash(user))
        return out


def key_paths(default_path: Path, store_url: str) -> list[Path]:
    """Where a store's key is kept: beside the store, else in the user's cache (by store URL)."""
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return [default_path, Path.home() / ".cache" / "botmeter" / "keys" / f"{digest}.key"]


def existing_key(hash_key: str | None, paths: list[Path]) -> bytes | None:
    """The key user ids were hashed with, for looking them up: the configured one, else the first
    kept key found. Never creates one (None: no key, so nothing was hashed with one here)."""
    if hash_key:
        return key_from_setting(hash_key)
    for path in paths:
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def lookup_values(hasher: UserHasher, dimension: str, values: list[str]) -> list[str]:
    """Filter values for user or conversation ids as people type them (a phone number) and as
    they are stored (its hash): both are kept, so a stored hash given back still matches."""
    out = list(values)
    for value in values:
        # Conversation ids are hashed when they are phone numbers.
        hashed = hasher.hash(value) if dimension == "user" else hasher.hash_phone_like([value])[0]
        if hashed != value and hashed not in out:
            out.append(hashed)
    return out


def key_from_setting(value: str) -> bytes:
    """A configured key: hex if it looks like hex, else its UTF-8 bytes (at least 16)."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = value.encode()
    if len(raw) < 16:
        raise ConfigError("BOTMETER_HASH_KEY must be at least 16 bytes (32 hex characters)")
    return raw


def _read_key(path: Path) -> bytes:
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:  # a damaged file must not stop the bot: the caller looks elsewhere, and says so
        raise OSError(f"{path} does not hold a user-hash key ({len(text)} characters of text)")
    return key


def load_or_create_key(path: Path) -> bytes:
    """Reads the key kept at ``path``, creating it (owner-only) the first time.

    Processes starting together agree on one key: each writes a candidate to its own temporary
    file, and the first to link it into place (an exclusive create: the link fails when the name
    exists) wins; every one then reads back what is there.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
        f.flush()
        os.fsync(f.fileno())
    try:
        # Two processes starting at once must agree on one key: the first link wins.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)
