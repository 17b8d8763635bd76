"""Who may call the API and what a configuration lets in: the tokens of Config (``access:`` and the
``api_token`` shorthand) with their roles, the webhook sources by path, the request size limit,
and whether the daemon may listen beyond loopback.

:class:`Access` is computed from a bundle once and rebuilt when a reload replaces the bundle, so
secrets are resolved once per configuration, not once per request. A token is kept only as its
SHA-256 digest and :meth:`Access.identify` compares the digest of the one presented with every
configured one (fixed length, no early return), so the time an answer takes does not tell which
token, or how much of one, was right. No token value is ever logged or put in an answer: a
principal is named by its access entry's name.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from flowctl.runtime.api.openapi import ROLES, Role
from flowctl.sources.errors import Forbidden, Misconfigured, Unauthorized
from flowctl.sources.webhooks import WebhookSource, resolve_secret
from flowctl.spec import model as m

log = logging.getLogger("flowctl.http")

_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
_WRITER = _RANK["writer"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: an access entry's name (``api_token`` for the shorthand,
    ``anonymous`` when no token is configured), its role and, for a writer, the objects it may
    write (``None``: every object)."""

    name: str
    role: Role
    objects: frozenset[str] | None = None

    def may(self, role: Role) -> bool:
        """This principal's role is ``role`` or above."""
        return _RANK[self.role] >= _RANK[role]

    def may_write(self, object: str) -> bool:
        """May write records and events of ``object``: a writer of it, or any role above writer."""
        rank = _RANK[self.role]
        return rank > _WRITER or (rank == _WRITER and (self.objects is None or object in self.objects))


ANONYMOUS = Principal("anonymous", "admin")
"""Anyone, when Config sets no token: the API is then only on loopback (:func:`listen_allowed`)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def listen_allowed(listen: str, *tokens: str) -> str:
    """Why the daemon must not listen on ``listen`` ('' when it may): beyond loopback needs a token
    (``tokens``: the resolved values of api_token and the access entries; one of only spaces is none)."""
    if any(token.strip() for token in tokens):
        return ""
    host = listen.rpartition(":")[0] if ":" in listen else listen
    host = host.strip().removeprefix("[").removesuffix("]")
    if host == "localhost":
        return ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return ""
    except ValueError:
        pass  # a host name, or '' (every interface): not loopback
    return f"refusing to listen on {listen} without api_token (or a token of access: whose ${{ENV}} variable is set)"


@dataclass(frozen=True, slots=True)
class Access:
    """What one configuration lets into the API."""

    bundle: m.Bundle
    open: bool  # no token configured at all (no api_token, no access:): anyone, on loopback only
    tokens: tuple[tuple[bytes, Principal], ...]  # (SHA-256 of the token, who holds it), usable ones only
    token_unset: bool  # api_token is configured but resolves empty
    request_bytes: int
    hooks: Mapping[str, WebhookSource | str]  # request path -> source, or why it could not be built

    def identify(self, token: str) -> Principal | None:
        """Who holds ``token`` (None: nobody). Compared in constant time with every configured
        token, whichever matches: the time taken does not depend on which one, or on how much of it, matches."""
        given = _digest(token.strip())  # '' matches nothing: a configured token is never empty
        found: Principal | None = None
        for digest, principal in self.tokens:
            if hmac.compare_digest(given, digest) and found is None:
                found = principal
        return found


def access_of(bundle: m.Bundle, env: Mapping[str, str]) -> Access:
    """The access ``bundle`` gives, its secrets resolved from ``env``. An access entry whose
    ``${ENV}`` variable is unset is left out (``channels.env.unset_env`` names it at start and in
    /readyz); a webhook source that cannot be built is logged and answers 500. The others keep working."""
    config = bundle.config
    # a token of only spaces is no token: nobody could send it (the Authorization value is stripped)
    shorthand = resolve_secret(config.api_token, env).strip() if config.api_token else ""
    tokens: list[tuple[bytes, Principal]] = []
    if shorthand:
        tokens.append((_digest(shorthand), Principal("api_token", "admin")))
    for entry in config.access:
        value = resolve_secret(entry.token, env).strip()
        if value and entry.role in _RANK:
            objects = frozenset(entry.objects) if entry.objects is not None and entry.role == "writer" else None
            role = ROLES[_RANK[entry.role]]  # the Role of that name (the schema allows no other)
            tokens.append((_digest(value), Principal(entry.name, role, objects)))
    hooks: dict[str, WebhookSource | str] = {}
    for source in bundle.sources.values():
        if source.type != "webhook" or not source.path:
            continue
        built: WebhookSource | str
        try:
            built = WebhookSource(source, env)
        except Exception as exc:  # noqa: BLE001 - a broken source answers 500, the others keep working
            log.error("webhook source %s cannot be used: %s", source.name, exc)
            built = f"webhook source {source.name} is misconfigured"
        if isinstance(built, WebhookSource) and built.misconfigured:
            log.error("%s", built.misconfigured)
        path = source.path if source.path.startswith("/hooks/") else "/hooks" + source.path
        hooks[path] = built
    return Access(
        bundle=bundle,
        open=not config.api_token and not config.access,
        tokens=tuple(tokens),
        token_unset=bool(config.api_token) and not shorthand,
        request_bytes=config.limits.request_bytes,
        hooks=hooks,
    )


def bearer(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>`` ('' without one)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authorize(request: Request, access: Access, role: Role) -> Principal:
    """Who sent ``request``, if they may do what needs ``role``: anyone (:data:`ANONYMOUS`) when
    no token is configured. Raises Unauthorized (401) without a known bearer token, Forbidden (403)
    when its role is below ``role``, Misconfigured (500) for an unknown token while api_token is
    configured but its variable is unset (the token that was meant cannot be checked)."""
    if access.open:
        return ANONYMOUS
    principal = access.identify(bearer(request))
    if principal is None:
        if access.token_unset:
            raise Misconfigured(
                "api_token is set in Config but resolves empty or to only spaces (is its ${ENV} variable set?)"
            )
        raise Unauthorized("this API needs Authorization: Bearer <token> (api_token, or a token of Config access:)")
    if not principal.may(role):
        raise Forbidden(f"the token '{principal.name}' has the role {principal.role}; this needs {role} or above")
    return principal


def allow_write(principal: Principal, object: str) -> None:
    """Raise Forbidden (403) unless ``principal`` may write records and events of ``object``."""
    if not principal.may("writer"):
        raise Forbidden(f"the token '{principal.name}' has the role {principal.role}; writing needs writer or above")
    if not principal.may_write(object):
        listed = ", ".join(sorted(principal.objects or ()))
        raise Forbidden(f"the token '{principal.name}' may write {listed or 'no object'} only, not {object}")
