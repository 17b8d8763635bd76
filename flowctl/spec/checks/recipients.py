"""E120/E121: the people ``to:`` names on send_email, send_sms and notify can be reached.

A recipient that names a user needs the user in Config ``users`` with the address the channel
sends to (an email for send_email, a phone for send_sms: one a numbering plan has); a literal
phone number in a send_sms ``to:`` that no plan has is W002; one that names a field needs the field,
of a type that gives that address (see ``engine.recipients.FIELD_TYPES``); ``linked.REF.FIELD``
needs ``REF`` to be a ``ref`` field of the record and ``FIELD`` a field of the object it links to.
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import Site, action_sites, field_names, hint_with, value_span
from flowctl.spec.issues import Issue, error, warning
from flowctl.spec.phones import phone_hint, phone_problem
from flowctl.spec.places import Span

#: What a recipient must resolve to, per action (mirrors ``engine.recipients.ADDRESS_KIND``).
_KIND = {"send_email": "email", "send_sms": "phone", "notify": "user"}
#: The field types that give each kind of address (mirrors ``engine.recipients.FIELD_TYPES``).
_TYPES = {"email": ("email", "user"), "phone": ("phone", "user"), "user": ("user",)}
_NAMES = {"email": "an email address", "phone": "a phone number", "user": "a user"}


def check_recipients(bundle: m.Bundle) -> Iterator[Issue]:
    """E120 (unknown user, or one without the address needed), E121 (missing or mistyped field) and
    W002 (a literal phone number no numbering plan has)."""
    for site in action_sites(bundle):
        kind = _KIND.get(site.action.type)
        if kind is None:
            continue
        for recipient in site.action.recipients:
            if recipient.kind == "user":
                yield from _user(bundle, site, recipient, kind)
            elif recipient.kind == "field":
                yield from _field(bundle, site, recipient, kind, site.object, recipient.value, "record")
            elif recipient.kind == "linked":
                yield from _linked(bundle, site, recipient, kind)
            elif recipient.kind == "address" and kind == "phone":
                yield from _literal_phone(bundle, site, recipient.value, value_span(recipient.where))
        if kind == "phone" and not site.action.recipients and site.action.to:
            yield from _literal_phone(bundle, site, site.action.to, value_span(site.action.where, "to"))


def _literal_phone(bundle: m.Bundle, site: Site, value: str, span: Span) -> Iterator[Issue]:
    """W002: a phone number written out in ``to:`` that no numbering plan has."""
    region = bundle.config.phone_region
    if "{" in value or not phone_problem(value, region):
        return
    hint = phone_hint(region)
    if value in bundle.config.users:
        hint = f"write {{user: {value}}} to send to the user's phone; or {hint}"
    yield warning(
        "W002",
        f"{site.owner} sends send_sms to '{value}', which is not a phone number any numbering plan has "
        f"(read in region {region})",
        span,
        hint,
    )


def _user(bundle: m.Bundle, site: Site, recipient: m.Recipient, kind: str) -> Iterator[Issue]:
    users = bundle.config.users
    user = users.get(recipient.value)
    span = value_span(recipient.where, "user") if _keyed(recipient, "user") else value_span(recipient.where)
    if user is None:
        yield error(
            "E120",
            f"{site.owner} sends to user '{recipient.value}', who is not in Config users",
            span,
            hint_with("add the user under Config spec.users or fix the name", recipient.value, users),
        )
    elif kind != "user" and not getattr(user, kind):
        yield error(
            "E120",
            f"{site.owner} sends {site.action.type} to user '{recipient.value}', who has no {kind} in Config users",
            span,
            f"add {kind}: to user '{recipient.value}' under Config spec.users, or send to someone else",
        )
    elif kind == "phone" and phone_problem(user.phone, bundle.config.phone_region):
        region = bundle.config.phone_region
        yield error(
            "E120",
            f"{site.owner} sends send_sms to user '{recipient.value}', whose phone '{user.phone}' in Config users "
            f"is not a number any numbering plan has (read in region {region})",
            span,
            f"fix the phone of user '{recipient.value}' under Config spec.users: {phone_hint(region)}",
        )


def _field(
    bundle: m.Bundle, site: Site, recipient: m.Recipient, kind: str, object_name: str, name: str, spelled: str
) -> Iterator[Issue]:
    obj = bundle.objects.get(object_name)
    if obj is None:
        return  # E030 reports the unknown object
    wanted = _TYPES[kind]
    spec = obj.fields.get(name)
    field_type = "user" if name == "owner" else (spec.type if spec is not None else "")
    if not field_type:
        yield error(
            "E121",
            f"{site.owner} sends to {spelled}.{name}, but {object_name} has no field '{name}'",
            value_span(recipient.where),
            hint_with(f"use a field of {object_name} of type {' or '.join(wanted)}", name, field_names(obj)),
        )
    elif field_type not in wanted:
        fitting = sorted(n for n, f in obj.fields.items() if f.type in wanted)
        yield error(
            "E121",
            f"{site.owner} sends {site.action.type} to {spelled}.{name}, a field of type {field_type}, which does not "
            f"give {_NAMES[kind]}",
            value_span(recipient.where),
            f"use a field of type {' or '.join(wanted)}"
            + (f" ({', '.join(fitting)})" if fitting else f"; {object_name} has none"),
        )


def _linked(bundle: m.Bundle, site: Site, recipient: m.Recipient, kind: str) -> Iterator[Issue]:
    ref, name = recipient.value.split(".", 1)
    obj = bundle.objects.get(site.object)
    if obj is None:
        return
    spec = obj.fields.get(ref)
    if spec is None or spec.type != "ref" or not spec.object:
        refs = sorted(n for n, f in obj.fields.items() if f.type == "ref")
        yield error(
            "E121",
            f"{site.owner} sends to linked.{recipient.value}, but '{ref}' is not a ref field of {site.object}",
            value_span(recipient.where),
            hint_with(f"name a field of {site.object} of type ref (with object:)", ref, refs),
        )
        return
    yield from _field(bundle, site, recipient, kind, spec.object, name, f"linked.{ref}")


def _keyed(recipient: m.Recipient, key: str) -> bool:
    return (*recipient.where.path, key) in recipient.where.marks
