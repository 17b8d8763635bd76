"""``${ENV}`` references in configuration text: their grammar, and their substitution.

Secrets never live in the config: a document writes ``${NAME}`` (NAME's value),
``${NAME:-default}`` (the default when NAME is unset or empty) or ``$${NAME}`` (a literal
``${NAME}``), and whoever uses the value resolves it at run time against the environment it is
given. Channels (``channels.base.resolve_env``), sources and Config's ``api_token`` all resolve with
:func:`substitute`, so one reference means the same everywhere; ``channels.env`` lists the
variables a whole configuration needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

# ${NAME} or ${NAME:-default}; $${...} stands for a literal ${...}.
ENV_REFERENCE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(ValueError):
    """A reference without a default names a variable the environment does not set."""


def env_names(value: str) -> set[str]:
    """The variable names a value references (escaped ``$${X}`` excluded)."""
    return {m.group(2) for m in ENV_REFERENCE.finditer(value) if not m.group(1)}


def needed(value: str) -> list[str]:
    """The variables ``value`` references without a default (``$${X}`` is a literal, not one)."""
    return [match.group(2) for match in ENV_REFERENCE.finditer(value) if not match.group(1) and match.group(3) is None]


def substitute(value: str, env: Mapping[str, str], remember: Callable[[str], None] | None = None) -> str:
    """``value`` with ``${NAME}`` (and ``${NAME:-default}``, used when NAME is unset or empty)
    replaced from ``env``, and ``$${...}`` unescaped.

    Raises :class:`UnsetVariable` naming a variable that is not set and has no default. Every
    substituted value is passed to ``remember`` (when given), so a caller can mask it later.
    """
    if "${" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                raise UnsetVariable(f"environment variable {name} is not set")
            return default
        if remember is not None:
            remember(found)
        return found

    return ENV_REFERENCE.sub(one, value)
