"""Secrets and personal data at rest: what Koppel keeps in Redis sealed with a key, its own files owner-only.

Sealed in Redis: every system's OAuth tokens (connectors/tokens.py), a Business Central access token
(connectors/businesscentral/auth.py), the webhook secrets a system issued (connectors/issued.py). They are
sealed with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key from the environment:

    KOPPEL_SECRET_KEY            the key new values are sealed with (a Fernet key: 32 url-safe base64 bytes;
                                 `koppel secret-key` prints a new one)
    KOPPEL_SECRET_KEY_PREVIOUS   earlier key(s), comma-separated: still opened, never used to seal (rotation)

Without KOPPEL_SECRET_KEY the key is `<data dir>/secret.key` (KOPPEL_DATA_DIR, default `.koppel`): Koppel
writes that file, owner-only, when it starts its embedded Redis there, so the demo and a one-machine Koppel
need no set-up. With neither, nothing secret is stored: `SecretKeyMissing` names the variable.

A value stored before sealing existed (plain JSON) is still read; its owner writes it back sealed.
A value sealed with a key that is not given raises `SecretUnreadable`, naming the fix.

Files: `private_dir` and `private_file` make directories 0700 and files 0600 (the data directory, the
embedded Redis's, logs, the stack's config).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateway.errors import PermanentError

KEY_VAR = "KOPPEL_SECRET_KEY"
PREVIOUS_VAR = "KOPPEL_SECRET_KEY_PREVIOUS"
KEY_FILE = "secret.key"
"""The generated key's file name in the data directory."""

__all__ = [
    "KEY_FILE", "KEY_VAR", "PREVIOUS_VAR", "SecretKeyMissing", "SecretUnreadable", "Vault", "ensure_key_file",
    "is_plain", "new_key", "private_dir", "private_file", "replace_if_unchanged", "vault",
]  # fmt: skip


class SecretKeyMissing(PermanentError):
    """No key to seal a secret with (neither KOPPEL_SECRET_KEY nor the data directory's key file)."""


class SecretUnreadable(PermanentError):
    """A sealed value that the given key(s) cannot open, or a key that is not a Fernet key."""


def new_key() -> str:
    """A new random key, as KOPPEL_SECRET_KEY takes it."""
    return Fernet.generate_key().decode()


def private_dir(path: Path) -> Path:
    """`path` (and missing parents) as a directory only its owner can enter: created 0700, or narrowed to 0700."""
    for missing in reversed([p for p in (path, *path.parents) if not p.exists()]):  # parents 0700 too
        missing.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(PermissionError):  # not ours: leave it as it is
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    return path


def private_file(path: Path, text: str | bytes) -> Path:
    """Write `path` readable and writable by its owner only (0600), also when it existed with wider modes."""
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def ensure_key_file(data_dir: Path) -> str:
    """The key in `<data_dir>/secret.key`, generated (owner-only) when there is none yet."""
    path = private_dir(data_dir) / KEY_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never replace a key another process wrote
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)
    return key


def _fernet(key: str, source: str) -> Fernet:
    try:
        return Fernet(key.strip().encode())
    except (ValueError, TypeError):
        raise SecretUnreadable(f"{source} is not a Fernet key (32 url-safe base64-encoded bytes): generate one "
                               "with `koppel secret-key`") from None  # fmt: skip


class Vault:
    """Seals text with the current key and opens what any given key sealed."""

    def __init__(self, current: str | None, previous: tuple[str, ...] = (), *, source: str = KEY_VAR) -> None:
        self.source = source
        self._current = _fernet(current, source) if current else None
        older = [_fernet(key, PREVIOUS_VAR) for key in previous if key.strip()]
        self._all = MultiFernet([self._current, *older]) if self._current else (MultiFernet(older) if older else None)

    @property
    def can_seal(self) -> bool:
        return self._current is not None

    def seal(self, text: str, *, what: str) -> str:
        """`text` encrypted and authenticated with the current key (`what` names it in the error)."""
        if self._current is None:
            raise SecretKeyMissing(f"cannot store {what}: no key to encrypt it with; set {KEY_VAR} (generate one "
                                   f"with `koppel secret-key`)")  # fmt: skip
        return self._current.encrypt(text.encode()).decode()

    def open(self, sealed: str | bytes, *, what: str, fix: str) -> str:
        """The text `seal` sealed; SecretUnreadable naming `fix` when no given key opens it."""
        token = sealed.encode() if isinstance(sealed, str) else sealed
        if self._all is None:
            raise SecretUnreadable(f"{what}: encrypted, and no key is given: set {KEY_VAR} to the key it was "
                                   f"stored with, or {fix}")  # fmt: skip
        try:
            return self._all.decrypt(token).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SecretUnreadable(f"{what}: encrypted with another key than {self.source}: set {KEY_VAR} (or "
                                   f"{PREVIOUS_VAR}) to the key it was stored with, or {fix}") from None  # fmt: skip

    def is_current(self, sealed: str | bytes) -> bool:
        """True when `sealed` opens with the current key (else it is rewritten with it: rotation)."""
        if self._current is None:
            return True
        try:
            self._current.decrypt(sealed.encode() if isinstance(sealed, str) else sealed)
        except InvalidToken:
            return False
        return True


def is_plain(raw: str | bytes) -> bool:
    """True for a value stored before sealing existed (JSON: it starts with `{`)."""
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else raw).lstrip().startswith("{")


_REPLACE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end"


def replace_if_unchanged(conn: redis.Redis, key: str, old: str | bytes, new: str) -> None:
    """Write `new` (a value sealed again: a plain one, or one under an older key) at `key` unless `key` no
    longer holds `old`: another process stored newer tokens meanwhile, which must not be overwritten."""
    conn.eval(_REPLACE, 1, key, old, new)


def vault(environ: Mapping[str, str] | None = None) -> Vault:
    """The vault of this process's keys: KOPPEL_SECRET_KEY (else the data directory's key file) and
    KOPPEL_SECRET_KEY_PREVIOUS."""
    env = os.environ if environ is None else environ
    current, source = env.get(KEY_VAR, "").strip(), KEY_VAR
    if not current:
        path = Path(env.get("KOPPEL_DATA_DIR", ".koppel")) / KEY_FILE
        with contextlib.suppress(OSError):
            current, source = path.read_text(encoding="utf-8").strip(), str(path)
    previous = tuple(part.strip() for part in env.get(PREVIOUS_VAR, "").split(","))
    return Vault(current or None, previous, source=source)
