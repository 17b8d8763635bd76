"""How a webhook Source authenticates its sender: the options each scheme needs (E130–E134).

``auth:`` is a scheme name or a mapping (``type`` and the scheme's options). ``body_token``
needs the body ``field`` that carries the token, written as a dotted path; ``zalo_oa`` needs the
Zalo app's ``app_id``; every scheme but ``none`` needs a ``secret``; an option a scheme does not
read is a mistake (a ``field`` under ``hmac`` checks nothing). A literal secret is E090
(``checks.secrets``). Messages never repeat a secret's value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import has_key, value_span
from flowctl.spec.issues import Issue, error

#: ``auth.application_token``: names joined by dots (a form's ``auth[application_token]`` nests so).
FIELD_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
#: The options each scheme reads under an ``auth:`` mapping, beside ``type``.
OPTIONS: dict[str, tuple[str, ...]] = {
    "hmac": ("secret", "signature_header"),
    "bearer": ("secret",),
    "none": (),
    "body_token": ("secret", "field"),
    "zalo_oa": ("secret", "app_id", "signature_header"),
}
EXAMPLES = {
    "hmac": 'auth: {type: hmac, secret: "${CRM_HOOK_SECRET}"}',
    "bearer": 'auth: {type: bearer, secret: "${CRM_HOOK_TOKEN}"}',
    "body_token": 'auth: {type: body_token, field: auth.application_token, secret: "${B24_APP_TOKEN}"}',
    "zalo_oa": 'auth: {type: zalo_oa, app_id: "${ZALO_APP_ID}", secret: "${ZALO_OA_SECRET}"}',
}


def _bracketed(path: str) -> str:
    """``auth[application_token]`` written as the dotted ``auth.application_token``."""
    return re.sub(r"\[([^\[\]]*)\]", r".\1", path).strip(".")


def check_source_auth(bundle: m.Bundle) -> Iterator[Issue]:
    """E130–E134: what each webhook authentication scheme needs, and options it does not read."""
    for source in bundle.sources.values():
        if source.type == "webhook":
            yield from _source(source)


def _source(source: m.Source) -> Iterator[Issue]:
    owner = f"webhook source '{source.name}'"
    scheme = source.auth
    mapped = bool(source.auth_options)
    auth_span = value_span(source.where, "auth", "type") if mapped else value_span(source.where, "auth")
    if scheme not in OPTIONS:
        return  # the schema names the schemes (E010)
    if scheme == "body_token" and not source.auth_field.strip():
        yield error(
            "E130",
            f"{owner} checks a body_token but names no body field that carries it",
            auth_span,
            f"add the field, as a dotted path: {EXAMPLES['body_token']}",
        )
    elif scheme == "body_token" and not FIELD_PATH.match(source.auth_field):
        dotted = _bracketed(source.auth_field)
        yield error(
            "E131",
            f"the token field of {owner} is not a dotted path of body fields",
            value_span(source.where, "auth", "field"),
            f"write field: {dotted}"
            if FIELD_PATH.match(dotted)
            else "write it as names joined by dots, e.g. "
            "auth.application_token (a form's auth[application_token] nests as auth → application_token)",
        )
    if scheme == "zalo_oa" and not source.app_id.strip():
        yield error(
            "E132",
            f"{owner} checks Zalo OA signatures but has no app_id (it is part of the signed text)",
            auth_span,
            f"add the Zalo app's id: {EXAMPLES['zalo_oa']}",
        )
    allowed = OPTIONS[scheme]
    for option in source.auth_options:
        if option != "type" and option not in allowed:
            reads = ", ".join(allowed) if allowed else "no options"
            yield error(
                "E133",
                f"{owner} authenticates with {scheme}, which does not read auth.{option}",
                value_span(source.where, "auth", option),
                f"remove auth.{option} or choose the scheme that reads it ({scheme} reads {reads})",
            )
    if "secret" in source.auth_options and has_key(source.where, "secret"):
        yield error(
            "E133",
            f"{owner} gives its secret twice, as secret and as auth.secret",
            value_span(source.where, "secret"),
            "keep one: auth.secret beside the scheme's other options",
        )
    if scheme != "none" and not source.secret.strip() and (mapped or scheme in ("body_token", "zalo_oa")):
        yield error(
            "E134",
            f"{owner} authenticates with {scheme} but has no secret",
            auth_span,
            f"add the secret as an ${{ENV}} reference: {EXAMPLES[scheme]}, and set the variable where flowctl runs",
        )
