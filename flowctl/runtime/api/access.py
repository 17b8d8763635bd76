"""Who may call the API and what a configuration lets in: the ``api_token``, the webhook sources by
path, the request size limit, and whether the daemon may listen beyond loopback.

:class:`Access` is computed from a bundle once and rebuilt when a reload replaces the bundle, so
secrets are resolved once per configuration, not once per request.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from flowctl.sources.errors import Misconfigured, Unauthorized
from flowctl.sources.webhooks import WebhookSource, resolve_secret
from flowctl.spec import model as m

log = logging.getLogger("flowctl.http")


def listen_allowed(listen: str, token: str) -> str:
    """Why the daemon must not listen on ``listen`` ('' when it may): beyond loopback needs a token
    (one of only spaces is none)."""
    if token.strip():
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
    return f"refusing to listen on {listen} without api_token"


@dataclass(frozen=True, slots=True)
class Access:
    """What one configuration lets into the API."""

    bundle: m.Bundle
    token: bytes  # b'' = no api_token configured
    token_unset: bool  # api_token is configured but resolves empty
    request_bytes: int
    hooks: Mapping[str, WebhookSource | str]  # request path -> source, or why it could not be built


def access_of(bundle: m.Bundle, env: Mapping[str, str]) -> Access:
    """The access ``bundle`` gives, its secrets resolved from ``env``; a webhook source that cannot
    be built is logged and answers 500, the others keep working."""
    config = bundle.config
    # a token of only spaces is no token: nobody could send it (the Authorization value is stripped)
    token = resolve_secret(config.api_token, env).strip() if config.api_token else ""
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
        token=token.encode(),
        token_unset=bool(config.api_token) and not token,
        request_bytes=config.limits.request_bytes,
        hooks=hooks,
    )


def authorize(request: Request, access: Access) -> None:
    """Raise unless the request carries the api_token (when one is configured)."""
    if access.token_unset:
        raise Misconfigured(
            "api_token is set in Config but resolves empty or to only spaces (is its ${ENV} variable set?)"
        )
    if not access.token:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), access.token):
        raise Unauthorized("this API needs Authorization: Bearer <api_token>")
