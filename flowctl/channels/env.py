"""The ``${ENV}`` variables a configuration needs, and which of them are not set.

Channels, sources and Config's tokens (``api_token``, ``access:``) resolve their references with
one function, :func:`flowctl.spec.env.substitute` (channels through ``channels.base.resolve_env``):
``${NAME}`` is NAME's value, ``${NAME:-default}`` the default when NAME is unset or empty, ``$${NAME}``
a literal ``${NAME}``. A reference without a default needs its variable set and not empty.
:func:`unset_env` lists every such variable that is not, with the place it is written, so that
``flowctl run`` and ``flowctl apply`` name them all at start in one message, ``/readyz`` reports
them, ``flowctl validate --env`` fails on them in CI, the deliverer holds the messages of a
channel that cannot be configured instead of dead-lettering them, and the API refuses an access
token whose variable is unset while the others work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from flowctl.spec import model as m
from flowctl.spec.checks._common import leaves, value_span
from flowctl.spec.env import needed
from flowctl.spec.issues import Issue, error
from flowctl.spec.places import PathPart, Span, Where


@dataclass(frozen=True, slots=True)
class Unset:
    """One variable a document needs that the environment does not give."""

    owner: str  # "channel sms", "source crm", "Config api_token", "access crm-sync"
    variable: str
    span: Span
    empty: bool = False  # set, but to ''

    @property
    def problem(self) -> str:
        return f"{self.variable} is {'empty' if self.empty else 'not set'}"

    def __str__(self) -> str:
        return f"{self.owner}: {self.problem}"


def _strings(doc: m.Document, keys: Sequence[str]) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """The text values of ``doc`` under its YAML ``keys`` (nested mappings and lists included)."""
    attributes = {"from": "sender"}
    for key in keys:
        value = getattr(doc, attributes.get(key, key), None)
        if isinstance(value, str):
            yield (key,), value
        elif value is not None:
            for path, leaf in leaves(value):
                if isinstance(leaf, str):
                    yield (key, *path), leaf


_NEEDS: dict[str, tuple[str, ...]] = {
    "channel": (
        "host",
        "username",
        "password",
        "from",
        "url",
        "headers",
        "body",
        "app_id",
        "secret_key",
        "refresh_token",
        "token_url",
    ),
    "source": ("secret", "url"),
}


def unset_env(bundle: m.Bundle, env: Mapping[str, str]) -> list[Unset]:
    """Every variable a channel, a source, Config's api_token or a token of its ``access:`` needs
    and ``env`` does not set (or sets to ''), in document order; each (owner, variable) once."""
    found: dict[tuple[str, str], Unset] = {}
    config = bundle.config
    places: list[tuple[str, tuple[PathPart, ...], str, Where]] = [
        ("Config api_token", ("api_token",), config.api_token, config.where),
        *((f"access {a.name}", ("token",), a.token, a.where) for a in config.access),
    ]
    documents: list[tuple[str, m.Document, tuple[str, ...]]]
    documents = [(f"channel {c.name}", c, _NEEDS["channel"]) for c in bundle.channels.values()]
    documents += [(f"source {s.name}", s, _NEEDS["source"]) for s in bundle.sources.values()]
    places += [(owner, path, text, doc.where) for owner, doc, keys in documents for path, text in _strings(doc, keys)]
    for owner, path, text, where in places:
        for name in needed(text) if "${" in text else ():
            if not env.get(name):
                found.setdefault((owner, name), Unset(owner, name, value_span(where, *path), empty=name in env))
    return list(found.values())


def by_owner(unset: Sequence[Unset]) -> dict[str, str]:
    """``{"channel sms": "channel sms: SMS_URL is not set, SMS_TOKEN is not set"}``."""
    grouped: dict[str, list[str]] = {}
    for item in unset:
        grouped.setdefault(item.owner, []).append(item.problem)
    return {owner: f"{owner}: {', '.join(problems)}" for owner, problems in grouped.items()}


def describe(unset: Sequence[Unset]) -> str:
    """All of them in one line: ``channel sms: SMS_URL is not set; source crm: CRM_URL is not set``."""
    return "; ".join(by_owner(unset).values())


def env_issues(bundle: m.Bundle, env: Mapping[str, str]) -> list[Issue]:
    """``flowctl validate --env``: an E095 error at each reference to a variable that is not set."""
    return [
        error(
            "E095",
            f"{u.owner} needs ${{{u.variable}}}, which {'is empty' if u.empty else 'is not set'} in this environment",
            u.span,
            f"set {u.variable} where flowctl run runs"
            + ("" if u.owner.startswith("access ") else f", or give it a default: ${{{u.variable}:-value}}"),
        )
        for u in unset_env(bundle, env)
    ]
