"""Zalo ZNS channels and their templates (E122–E127).

A ``zalo_zns`` channel needs the Zalo app's id, its secret key and the first OA refresh token;
the two secrets must be ``${ENV}`` references (the refresh token is rotated at every refresh, so a
literal one would be spent after the first day anyway). Its ``fallback:`` names a channel and a
template that exist; an action sending through it names a Template with a ``template_id``.
Messages never repeat a secret's value: the validate output ends up in CI logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import action_sites, hint_with, name_span, value_span
from flowctl.spec.dependencies import needs_document
from flowctl.spec.issues import Issue, error

#: Exactly one reference, without a default: ``${ZALO_SECRET_KEY}``.
ONE_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
NEEDED = {
    "app_id": '"${ZALO_APP_ID}"',
    "secret_key": '"${ZALO_SECRET_KEY}"',
    "refresh_token": '"${ZALO_REFRESH_TOKEN}"',
}
SECRETS = ("secret_key", "refresh_token")


def check_zalo(bundle: m.Bundle) -> Iterator[Issue]:
    """E122–E127: what a zalo_zns channel, its fallback and the templates sent through it need."""
    for channel in bundle.channels.values():
        if channel.type == "zalo_zns":
            yield from _channel(bundle, channel)
    for doc in bundle.templates.values():
        if doc.template_data and not doc.template_id:
            yield error(
                "E127",
                f"template '{doc.name}' has template_data but no template_id",
                value_span(doc.where, "template_data"),
                'add the id of the approved ZNS template: template_id: "231564"',
            )
    zalo = {name for name, channel in bundle.channels.items() if channel.type == "zalo_zns"}
    for site in action_sites(bundle):
        action = site.action
        if action.channel not in zalo:
            continue
        template = bundle.templates.get(action.template) if action.template else None
        if action.template and template is None:
            continue  # E034 names the missing template
        if template is None or not template.template_id:
            what = f"template '{action.template}' has no template_id" if template else "it names no template"
            yield error(
                "E126",
                f"{site.owner} sends through zalo_zns channel '{action.channel}', but {what}",
                value_span(action.where, "template" if template else "channel"),
                "name a Template with template_id (an approved ZNS template) and template_data",
                needs=needs_document("Template", action.template) if template else (),
            )


def _channel(bundle: m.Bundle, channel: m.Channel) -> Iterator[Issue]:
    owner = f"zalo_zns channel '{channel.name}'"
    for key, example in NEEDED.items():
        value = getattr(channel, key)
        if not value.strip():
            yield error(
                "E122",
                f"{owner} has no {key}",
                name_span(channel),
                f"add {key}: {example} and set the variable where flowctl run runs",
            )
        elif key in SECRETS and not ONE_REFERENCE.match(value.strip()):
            yield error(
                "E123",
                f"the {key} of {owner} is not one ${{ENV}} reference",
                value_span(channel.where, key),
                f"write {key}: {example} (no default, no literal) and set the variable where flowctl run runs; "
                "rotate a secret that was committed: it is in git history",
            )
    fallback = channel.fallback
    if fallback is None:
        return
    target = bundle.channels.get(fallback.channel)
    if target is None or target.type == "zalo_zns":
        why = "which does not exist" if target is None else "which is a zalo_zns channel itself"
        known = [name for name, c in bundle.channels.items() if c.type != "zalo_zns"]
        yield error(
            "E124",
            f"the fallback of {owner} names channel '{fallback.channel}', {why}",
            value_span(channel.where, "fallback", "channel"),
            hint_with("name an SMS channel (type http) defined in the config", fallback.channel, known),
            needs=needs_document("Channel", fallback.channel),
        )
    template = bundle.templates.get(fallback.template)
    if template is None or not template.text:
        why = "which does not exist" if template is None else "which has no text"
        yield error(
            "E125",
            f"the fallback of {owner} names template '{fallback.template}', {why}",
            value_span(channel.where, "fallback", "template"),
            hint_with("name a Template with a text (an SMS template)", fallback.template, bundle.templates)
            if template is None
            else "give the template a text, or name an SMS template",
            needs=needs_document("Template", fallback.template),
        )
