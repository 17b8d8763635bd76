"""``to:`` of send_email, send_sms and notify read into the model's recipients.

Kept out of the builder because the spellings (owner, supervisor, ``{user: …}``, ``record.F``,
``linked.R.F``, a list of those) are a small language of their own; ``engine.recipients``
resolves what this reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from flowctl.spec import model as m
from flowctl.spec.places import Where


def _str(value: Any) -> str:
    """As the builder reads a scalar: None is empty, a YAML boolean is true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: ``to:`` spellings that name people rather than give an address (see ``m.Recipient``)
_RECORD_FIELD = re.compile(r"record\.([A-Za-z_][A-Za-z0-9_]*)")
_LINKED_FIELD = re.compile(r"linked\.([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")
_MESSAGES = ("send_email", "send_sms", "notify")


def _recipient(raw: Any, w: Where, action_type: str) -> m.Recipient | None:
    """One ``to:`` item as a recipient; None for a lone address template (``to`` as before)."""
    if isinstance(raw, Mapping):
        return m.Recipient(kind="user", value=_str(raw.get("user")), where=w) if "user" in raw else None
    text = _str(raw).strip()
    if text in ("owner", "supervisor"):
        return m.Recipient(kind=cast(Any, text), where=w)
    if match := _RECORD_FIELD.fullmatch(text):
        return m.Recipient(kind="field", value=match.group(1), spelled=text, where=w)
    if match := _LINKED_FIELD.fullmatch(text):
        return m.Recipient(kind="linked", value=f"{match.group(1)}.{match.group(2)}", spelled=text, where=w)
    if action_type == "notify":
        return m.Recipient(kind="user", value=text, where=w)
    return m.Recipient(kind="address", value=_str(raw), where=w)


def recipients(raw: Any, w: Where, action_type: str) -> tuple[m.Recipient, ...]:
    """``to:`` of send_email, send_sms and notify when it names people (a list, ``{user: …}``,
    owner, supervisor, ``record.F``, ``linked.R.F``); () when it keeps its earlier meaning: an
    address template (send_email, send_sms) or an assignee (notify: a user, ``{rule: …}``)."""
    if action_type not in _MESSAGES or raw is None or raw == "":
        return ()
    if isinstance(raw, list):
        found = (_recipient(item, w.child(i), action_type) for i, item in enumerate(raw))
        return tuple(r for r in found if r is not None)
    one = _recipient(raw, w, action_type)
    if one is None or one.kind == "address" or (action_type == "notify" and one.kind not in ("field", "linked")):
        return ()
    return (one,)
