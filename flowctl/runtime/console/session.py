"""Who is using the console: sign-in exchanges a token for a session, kept on the server; the
browser holds only a random session id in an HttpOnly, SameSite=Strict cookie scoped to ``/ui``.

A session knows its principal's name and role, its CSRF token (every POST form carries it back and
:meth:`Sessions.check_csrf` compares it in constant time) and when it ends. The token itself is
checked once, at sign-in, and never stored. Sessions live in this process: a restart signs
everyone out, which is the safe direction.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from flowctl.runtime.api.access import Access
from flowctl.runtime.api.openapi import ROLES, Role

COOKIE = "flowctl_session"
CSRF_COOKIE = "flowctl_signin"  # the sign-in form's own CSRF value (there is no session yet)
PATH = "/ui"
LIFETIME = 8 * 3600.0  # seconds a session lasts after sign-in
MAX_SESSIONS = 10_000  # the oldest goes first beyond this: memory stays bounded


@dataclass(frozen=True, slots=True)
class Who:
    """The principal a page is rendered for."""

    name: str  # the access entry's name ("api_token" for the shorthand)
    role: Role
    signed_in: bool  # False: the open, read-only console on loopback

    def may(self, role: Role) -> bool:
        """Signed in with ``role`` or above (the open console may only read)."""
        return self.signed_in and ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Who(name="anonymous", role="viewer", signed_in=False)


@dataclass(frozen=True, slots=True)
class Session:
    who: Who
    csrf: str
    ends: float  # time.monotonic() after which the session is gone


def identify(access: Access, token: str) -> Who | None:
    """Who holds ``token`` under ``access`` (None: nobody; ``Access.identify`` compares in constant time)."""
    principal = access.identify(token)
    return None if principal is None else Who(name=principal.name, role=principal.role, signed_in=True)


class Sessions:
    """Random session id -> :class:`Session`, in memory, thread-safe."""

    def __init__(self, lifetime: float = LIFETIME, limit: int = MAX_SESSIONS) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, who: Who) -> tuple[str, Session]:
        """A new session for ``who``: its id (the cookie's value) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(who=who, csrf=self.new_csrf(), ends=time.monotonic() + self.lifetime)
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return session_id, session

    @staticmethod
    def new_csrf() -> str:
        return secrets.token_urlsafe(32)

    def get(self, session_id: str) -> Session | None:
        """The live session of ``session_id`` (None: unknown or ended)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.ends < time.monotonic():
                del self._sessions[session_id]
                return None
            return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


def same_token(given: str, expected: str) -> bool:
    """A CSRF token check: both present and equal, in constant time."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
