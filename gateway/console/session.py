"""The console's login session and CSRF tokens, signed with a key derived from the admin token.

A session is a signed, timestamped cookie naming a random session id; it expires after
`SESSION_SECONDS` (the signature's timestamp, checked on every request) and when the admin token
changes (the signing key is derived from it). A CSRF token is the session id signed under another
salt: every state-changing request must carry the token of the session that sent it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

COOKIE = "koppel_console"
SESSION_SECONDS = 8 * 3600

__all__ = ["COOKIE", "SESSION_SECONDS", "Sessions"]


class Sessions:
    """Issue and check session cookies and CSRF tokens for one admin token."""

    def __init__(self, admin_token: SecretStr, *, max_age: int = SESSION_SECONDS) -> None:
        token = admin_token.get_secret_value().encode()
        self._token = token
        key = hmac.new(token, b"koppel-console-signing-key", hashlib.sha256).hexdigest()
        self._sessions = URLSafeTimedSerializer(key, salt="koppel-console-session")
        self._csrf = URLSafeTimedSerializer(key, salt="koppel-console-csrf")
        self.max_age = max_age

    def token_matches(self, presented: str) -> bool:
        """Whether `presented` is the admin token (constant time)."""
        return hmac.compare_digest(presented.encode(), self._token)

    def issue(self) -> str:
        """A new session's cookie value."""
        return self._sessions.dumps({"sid": secrets.token_urlsafe(24)})

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a cookie that is genuine and not expired; None otherwise."""
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        sid = data.get("sid") if isinstance(data, dict) else None
        return sid if isinstance(sid, str) and sid else None

    def csrf_token(self, session_id: str) -> str:
        return self._csrf.dumps(session_id)

    def csrf_ok(self, session_id: str, presented: str | None) -> bool:
        if not presented:
            return False
        try:
            signed = self._csrf.loads(presented, max_age=self.max_age)
        except BadSignature:
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed.encode(), session_id.encode())
