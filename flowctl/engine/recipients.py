"""Who a message goes to: the ``to:`` of send_email, send_sms and notify, resolved per channel.

``to:`` may name people instead of giving an address: ``owner``, ``supervisor`` (the owner's
supervisor, from Config ``users``), ``{user: NAME}``, ``record.FIELD``, ``linked.REF.FIELD`` (a
field of the record that ``REF`` links to) or an address template, and a list of those (AMIS:
"people of the system and related records"). Each resolves to the address kind of the action's
channel: an email address for send_email, a phone number for send_sms, a user name for notify. A
user (``owner``, ``supervisor``, ``{user: …}``, or a ``user``-typed field) gives the email or
phone Config lists for them; an email or phone field gives its value.

The result is the distinct addresses in the order written (one message each; an address written
twice, or the owner who is also named, gets one), and the recipients that gave none, so the run
can say who was left out. Pure: it reads the record, the render context and the bundle only.
``linked.REF.FIELD`` reads ``context["linked"][REF][FIELD]``: the runtime loads the linked
records an automation reads into the context before the engine runs (issue 16, item 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowctl.spec import model as m

#: What a recipient resolves to, per action: the attribute of a Config user, or the user itself.
ADDRESS_KIND = {"send_email": "email", "send_sms": "phone", "notify": "user"}

#: The field types a ``record.F``/``linked.R.F`` recipient may have, per address kind (``user``
#: fields resolve through Config users).
FIELD_TYPES = {"email": ("email", "user"), "phone": ("phone", "user"), "user": ("user",)}


@dataclass(frozen=True, slots=True)
class Resolved:
    """The distinct addresses to send to, and a note for each recipient that gave none."""

    addresses: tuple[str, ...]
    missing: tuple[str, ...] = ()


def owner_of(record: Any) -> str:
    """The record's owner (the built-in, else an ``owner`` field)."""
    return str(record.owner or record.fields.get("owner") or "")


def resolve(
    action_type: str,
    recipients: tuple[m.Recipient, ...],
    record: Any,
    context: Mapping[str, Any],
    bundle: m.Bundle,
    render: Callable[[str, Mapping[str, Any]], str],
) -> Resolved:
    """The addresses ``recipients`` give for ``record`` on ``action_type``'s channel."""
    kind = ADDRESS_KIND[action_type]
    users = bundle.config.users
    seen: dict[str, str] = {}  # normalised -> as written
    missing: list[str] = []

    def of_user(name: str) -> str:
        if kind == "user" or not name:
            return name
        user = users.get(name)
        return str(getattr(user, kind, "") or "") if user is not None else ""

    for recipient in recipients:
        address, what = "", _describe(recipient)
        if recipient.kind == "owner":
            address = of_user(owner_of(record))
        elif recipient.kind == "supervisor":
            boss = users.get(owner_of(record))
            address = of_user(boss.supervisor if boss is not None else "")
        elif recipient.kind == "user":
            address = of_user(recipient.value)
        elif recipient.kind == "field":
            value = owner_of(record) if recipient.value == "owner" else record.fields.get(recipient.value)
            address = _from_field(value, _field_type(bundle, record.object, recipient.value), of_user)
        elif recipient.kind == "linked":
            ref, name = recipient.value.split(".", 1)
            linked = _linked(context, ref)
            target = _ref_object(bundle, record.object, ref)
            address = _from_field(linked.get(name), _field_type(bundle, target, name), of_user)
        else:
            address = render(recipient.value, context).strip()
        if not address:
            missing.append(what)
            continue
        seen.setdefault(address.strip().lower() if kind == "email" else address.strip(), address.strip())
    return Resolved(tuple(seen.values()), tuple(missing))


def _describe(recipient: m.Recipient) -> str:
    if recipient.kind in ("owner", "supervisor"):
        return recipient.kind
    if recipient.kind == "user":
        return f"user '{recipient.value}'"
    if recipient.kind == "field":
        return f"record.{recipient.value}"
    if recipient.kind == "linked":
        return f"linked.{recipient.value}"
    return f"'{recipient.value}'"


def _from_field(value: Any, field_type: str, of_user: Callable[[str], str]) -> str:
    if value is None or value == "":
        return ""
    return of_user(str(value)) if field_type == "user" else str(value)


def _field_type(bundle: m.Bundle, object_name: str, name: str) -> str:
    if name == "owner":
        return "user"
    obj = bundle.objects.get(object_name)
    spec = obj.fields.get(name) if obj is not None else None
    return spec.type if spec is not None else ""


def _ref_object(bundle: m.Bundle, object_name: str, ref: str) -> str:
    obj = bundle.objects.get(object_name)
    spec = obj.fields.get(ref) if obj is not None else None
    return spec.object if spec is not None else ""


def _linked(context: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """The fields of the record ``ref`` links to, as the runtime loaded them into the context
    (``linked``); empty while nothing loaded it."""
    linked = context.get("linked")
    found = linked.get(ref) if isinstance(linked, Mapping) else None
    return found if isinstance(found, Mapping) else {}
