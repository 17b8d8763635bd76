"""Secrets written into the repository instead of ``${ENV}`` references (E090).

A value is a literal secret when it sits where a secret goes (a Channel ``password``, an
``Authorization``-like header, a Source ``secret``, Config ``api_token``, a password in a URL, a
``token=`` query parameter, a ``password``/``api_key`` key of a request body) and it neither
references an environment variable (``${NAME}``) nor is a template (``{{ … }}``). Messages never
repeat the value: the validate output ends up in CI logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flowctl.spec import model as m
from flowctl.spec.checks._common import action_sites, leaves, value_span
from flowctl.spec.issues import Issue, error
from flowctl.spec.places import PathPart, Span, Where

SECRET_HEADER = re.compile(r"auth|token|secret|passw|api[-_]?key|cookie|credential|session", re.IGNORECASE)
SECRET_KEY = re.compile(
    r"passw|secret|token|api[-_]?key|apikey|credential|private[-_]?key|access[-_]?key", re.IGNORECASE
)

HINT = 'write a ${ENV_VAR} reference instead (e.g. "Bearer ${SMS_TOKEN}") and set the variable where flowctl runs'


def is_literal(value: Any) -> bool:
    """A non-empty value that is neither an ``${ENV}`` reference nor a template."""
    if value is None or isinstance(value, bool):
        return False
    text = str(value).strip()
    return bool(text) and "${" not in text and "{{" not in text


def url_problem(url: str) -> str | None:
    """What in a URL is a literal secret (its password, a token parameter), or None."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return None
    if password and is_literal(password):
        return "the URL carries a password"
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if SECRET_KEY.search(key) and is_literal(value):
            return f"the URL's '{key}' parameter holds a secret"
    return None


def _issue(what: str, span: Span) -> Issue:
    return error("E090", f"{what} is written as a literal secret", span, HINT)


def _headers(headers: Mapping[str, str], owner: str, where: Where) -> Iterator[Issue]:
    for name, value in headers.items():
        if SECRET_HEADER.search(name) and is_literal(value):
            yield _issue(f"header '{name}' of {owner}", value_span(where, "headers", name))


def _body(body: Any, owner: str, where: Where, key: str) -> Iterator[Issue]:
    for path, value in leaves(body):
        names = [p for p in path if isinstance(p, str)]
        if names and SECRET_KEY.search(names[-1]) and is_literal(value):
            yield _issue(f"'{'.'.join(str(p) for p in path)}' in the {key} of {owner}", value_span(where, key, *path))


def _url(url: str, owner: str, where: Where, *keys: PathPart) -> Iterator[Issue]:
    problem = url_problem(url) if url else None
    if problem:
        yield error("E090", f"{owner}: {problem} written as a literal", value_span(where, *keys), HINT)


def check_secrets(bundle: m.Bundle) -> Iterator[Issue]:
    """E090: secrets written as literals in Config, Channels, Sources and webhook actions."""
    config = bundle.config
    if is_literal(config.api_token):
        yield _issue("Config api_token", value_span(config.where, "api_token"))
    yield from _url(config.database, "Config database", config.where, "database")
    for channel in bundle.channels.values():
        owner = f"channel '{channel.name}'"
        if is_literal(channel.password):
            yield _issue(f"the password of {owner}", value_span(channel.where, "password"))
        yield from _headers(channel.headers, owner, channel.where)
        yield from _body(channel.body, owner, channel.where, "body")
        yield from _url(channel.url, owner, channel.where, "url")
    for source in bundle.sources.values():
        owner = f"source '{source.name}'"
        if is_literal(source.secret):
            at = ("auth", "secret") if "secret" in source.auth_options else ("secret",)
            yield _issue(f"the secret of {owner}", value_span(source.where, *at))
        yield from _url(source.url, owner, source.where, "url")
    for site in action_sites(bundle):
        action = site.action
        yield from _headers(action.headers, site.owner, action.where)
        yield from _body(action.body, site.owner, action.where, "body")
        yield from _url(action.url, site.owner, action.where, "url")
