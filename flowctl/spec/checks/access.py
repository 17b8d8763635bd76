"""The tokens of Config ``access:``: each is one ``${ENV}`` reference (E092), its name and its
token identify one entry (E023), and a writer's ``objects`` name object types that exist (E030).

A token is a secret, so it lives in the environment of the daemon and never in git: a literal
(or a ``${NAME:-default}``, whose default is a literal) is refused with its place. Messages never
repeat the value: the validate output ends up in CI logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import hint_with, item_span, value_span
from flowctl.spec.dependencies import needs_document
from flowctl.spec.env import ENV_REFERENCE
from flowctl.spec.issues import Issue, error

REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def variable_for(name: str) -> str:
    """A variable name to suggest for the token of the entry ``name``: ``crm-sync`` → ``CRM_SYNC_TOKEN``."""
    stem = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "API"
    return f"{'_' if stem[0].isdigit() else ''}{stem}_TOKEN"


def _token_problem(token: str) -> str:
    """Why ``token`` is not one ``${ENV}`` reference ('' when it is)."""
    text = token.strip()
    if REFERENCE.fullmatch(text):
        return ""
    references = list(ENV_REFERENCE.finditer(text))
    if not references:
        return "is written as a literal token"
    if any(found.group(3) is not None for found in references):
        return "has a default (${NAME:-…}), which is a literal token written in git"
    return "must be one ${ENV} reference and nothing around it"


def check_access(bundle: m.Bundle) -> Iterator[Issue]:
    """E092 a token that is not one ``${ENV}`` reference, E023 a name or token used twice, E030 a
    writer's object that no ObjectType defines."""
    config = bundle.config
    names: dict[str, m.AccessEntry | None] = {"api_token": None} if config.api_token else {}
    tokens: dict[str, str] = {config.api_token.strip(): "api_token"} if config.api_token.strip() else {}
    for entry in config.access:
        where = entry.where
        problem = _token_problem(entry.token)
        if problem:
            variable = variable_for(entry.name)
            yield error(
                "E092",
                f"the token of access '{entry.name}' {problem}",
                value_span(where, "token"),
                f'write token: "${{{variable}}}" and set {variable} where flowctl run runs; '
                "rotate a token that was committed: it is in git history",
            )
        if entry.name in names:
            first = names[entry.name]
            yield error(
                "E023",
                f"two access entries are named '{entry.name}'"
                + (f" (first at line {first.where.at().line})" if first else " (the api_token shorthand is named so)"),
                value_span(where, "name"),
                "give each token its own name: logs and 403 answers name the token by it",
            )
        else:
            names[entry.name] = entry
        holder = tokens.get(entry.token.strip())
        if holder is not None and not problem:
            yield error(
                "E023",
                f"access '{entry.name}' and '{holder}' have the same token {entry.token.strip()}",
                value_span(where, "token"),
                "a token identifies one entry: give each its own variable",
            )
        elif not problem:
            tokens[entry.token.strip()] = entry.name
        for i, object in enumerate(entry.objects or ()):
            if object not in bundle.objects:
                yield error(
                    "E030",
                    f"access '{entry.name}' names object type '{object}', which no ObjectType defines",
                    item_span(where, "objects", i),
                    hint_with(f"add an ObjectType '{object}' or fix the name", object, bundle.objects),
                    needs=needs_document("ObjectType", object),
                )
