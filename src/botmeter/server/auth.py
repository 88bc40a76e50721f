"""Tokens: who may send events for which bot, and who may read.

A token is ``bm_<id>_<secret>``; only the SHA-256 of the whole token is kept (with its id, bot and
scopes) in a JSON file beside the store, so a copy of the file lets nobody in. The id finds the
entry; the hashes are compared in constant time. Tokens are never logged. The server re-reads the
file when it changes, so a revoked token stops working within a second, without a restart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..exceptions import ConfigError, InputError
from ..store import Store

SCOPES = ("ingest", "read")
_PREFIX = "bm_"
_RELOAD_EVERY_S = 1.0


@dataclass(frozen=True)
class Token:
    """A token as kept: never the token itself, only its hash."""

    id: str
    bot: str
    scopes: tuple[str, ...]
    sha256: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def tokens_path(store: Store, configured: str | None = None) -> Path:
    """Where a store's tokens are kept: beside its user-hash key, unless configured."""
    if configured:
        return Path(configured)
    key = store.default_key_path()
    return key.with_name(key.name.removesuffix(".key") + ".tokens.json")


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InputError(f"--scope must be ingest, read or ingest,read; got {text!r}")
    return scopes


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenFile:
    """The tokens of one store, as a JSON file written whole (temporary file, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0

    def load(self) -> dict[str, Token]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the tokens file {self.path}: {exc}") from exc
        return {t["id"]: Token(**{**t, "scopes": tuple(t["scopes"])}) for t in raw.get("tokens", [])}

    def _save(self, tokens: dict[str, Token]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = json.dumps({"tokens": [asdict(t) for t in tokens.values()]}, indent=2)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def create(self, bot: str, scopes: tuple[str, ...]) -> str:
        """A new token for ``bot``; the only time it is ever seen."""
        if not bot or not bot.strip():
            raise InputError(f"--bot must be a bot's name, got {bot!r}")
        token_id = secrets.token_hex(6)
        token = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        with self._lock:
            tokens = self.load()
            tokens[token_id] = Token(
                token_id, bot, scopes, _digest(token), datetime.now(UTC).isoformat(timespec="seconds")
            )
            self._save(tokens)
        return token

    def revoke(self, token_id: str) -> Token:
        with self._lock:
            tokens = self.load()
            found = tokens.get(token_id)
            if found is None:
                raise InputError(f"no token with id {token_id!r} in {self.path}")
            if found.active:
                found = tokens[token_id] = Token(
                    **{**asdict(found), "revoked_at": datetime.now(UTC).isoformat(timespec="seconds")}
                )
                self._save(tokens)
            return found

    def find(self, token: str) -> Token | None:
        """The active token this is, or None; the hash comparison takes the same time either way."""
        self._refresh()
        token_id = ""
        if token.startswith(_PREFIX):
            token_id = token[len(_PREFIX) :].split("_", 1)[0]
        entry = self._tokens.get(token_id)
        if entry is None and token_id:
            self._refresh(force=True)  # a token created a moment ago works at once (a stat per miss)
            entry = self._tokens.get(token_id)
        expected = entry.sha256 if entry is not None else "0" * 64
        matches = hmac.compare_digest(_digest(token), expected)
        return entry if matches and entry is not None and entry.active else None

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < _RELOAD_EVERY_S and self._stamp is not None:
            return
        self._checked = now
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            with contextlib.suppress(ConfigError):  # a file being replaced: keep the tokens known
                self._tokens = self.load()
                self._stamp = stamp


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        # Browsers: any user name, the read token as the password.
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def authenticate(request: Request, scope: str) -> Token:
    """The request's token, if it is valid and has ``scope``: else 401 (none or unknown), 403 (scope)."""
    tokens: TokenFile = request.app.state.tokens
    presented = _presented(request)
    token = tokens.find(presented) if presented else None
    if token is None:
        challenge = (
            'Basic realm="botmeter", charset="UTF-8"' if scope == "read" else 'Bearer realm="botmeter"'
        )
        reason = "a token is required" if presented is None else "the token is not valid"
        raise HTTPException(401, reason, headers={"WWW-Authenticate": challenge})
    if scope not in token.scopes:
        raise HTTPException(403, f"this token has no {scope} scope (it has {', '.join(token.scopes)})")
    return token
