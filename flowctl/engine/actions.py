"""Actions to effects: render every parameter, resolve channel and assignee, decide record writes.

Actions that only change the record (``update_fields``, ``move_stage``, ``handover``) return the
new record as well as an effect, so the core can apply it and let it trigger other automations.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flowctl.engine import recipients
from flowctl.engine.allocation import pick
from flowctl.engine.links import missing_ref
from flowctl.engine.records import check_fields, check_stage
from flowctl.engine.sms import segments
from flowctl.engine.state import Effect, Record, copier
from flowctl.engine.tx import Tx
from flowctl.spec import model as m
from flowctl.spec.durations import DurationError, parse_duration
from flowctl.spec.links import created_id
from flowctl.spec.templating import compile_template, named

#: The channel name an action uses when it names none (if the config defines it; else ``log``).
MEDIUM = {
    "send_email": "email",
    "send_sms": "sms",
    "call": "call",
    "webhook": "webhook",
    "notify": "notify",
    "create_task": "task",
    "create_document": "document",
    "handover": "crm",
    "add_care_card": "crm",
}

#: Actions whose only effect is in the store: on the record, or a note on its timeline.
STORE_ONLY = ("update_fields", "move_stage", "add_note", "create_record")


_effect = copier(Effect)  # Effect(...) without the keyword checks of a frozen dataclass
_BLANK = Effect(key="", action="", run_id="", object="", record_id="")


class ActionError(Exception):
    """An action that cannot be rendered (unknown template, bad due date, no allocation users)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    effect: Effect
    record: Record | None = None  # the record after the action, when the action changes it
    #: one more effect per further recipient of a message (``to:`` naming several people)
    more: tuple[Effect, ...] = ()
    missing: tuple[str, ...] = ()  # recipients that gave no address (the others were sent to)


def render(source: str, context: Mapping[str, Any]) -> str:
    if not source:
        return ""
    field = _lone_field(source)
    if field is not None:  # "{{ record.phone }}": the most common template, read without Jinja
        scope = context.get(field[0])
        if isinstance(scope, dict) and field[1] in scope:
            value = scope[field[1]]
            if value is None:
                return ""
            if type(value) is str:
                return value
            if type(value) is int:
                return str(value)
    return compile_template(source).render(context)


def render_html(source: str, context: Mapping[str, Any]) -> str:
    """An HTML body: every value it prints is escaped, so record values stay text."""
    return compile_template(source, html=True).render(context) if source else ""


_LONE_FIELD = re.compile(r"\{\{\s*([A-Za-z_]+)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@functools.lru_cache(maxsize=4096)
def _lone_field(source: str) -> tuple[str, str] | None:
    """(root, field) when ``source`` is exactly ``{{ root.field }}`` and Jinja would read the key
    (not a dict method such as ``record.items``); else None."""
    match = _LONE_FIELD.fullmatch(source)
    if match is None or hasattr(dict, match.group(2)):
        return None
    return match.group(1), match.group(2)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string leaf of a JSON-shaped value (webhook bodies, ``set:`` values)."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, Mapping):
        return {str(k): render_value(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context) for v in value]
    return value


#: What an action's handler returns: the effect's parameters, and the record as the action changed
#: it (None when the action leaves the record as it was).
Rendered = tuple[dict[str, Any], Record | None]
Handler = Callable[["ActionRenderer", m.Action, Record, Mapping[str, Any], Tx], Rendered]

#: The handler of each action type, filled by ``@_handles`` below; every type of the language has one.
_HANDLERS: dict[str, Handler] = {}


def _handles(action_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _HANDLERS[action_type] = handler
        return handler

    return register


class ActionRenderer:
    """Renders actions against one bundle. Holds nothing but the bundle: safe to share."""

    def __init__(self, bundle: m.Bundle) -> None:
        self.bundle = bundle
        self._channels: dict[int, str] = {}  # id(action) -> channel; actions live as long as the bundle
        self._final: dict[str, tuple[tuple[str, str], ...]] = {}  # object -> its final stages

    def channel_for(self, action: m.Action, template: m.Template | None) -> str:
        if action.channel:
            return action.channel
        medium = MEDIUM.get(action.type, "")
        if template is not None and template.channel in self.bundle.channels:
            return template.channel
        return medium if medium in self.bundle.channels else "log"

    def template(self, name: str) -> m.Template:
        template = self.bundle.templates.get(name)
        if template is None:
            raise ActionError(f"template '{name}' is not defined")
        return template

    # ------------------------------------------------------------------ people

    def user_contact(self, user: str) -> dict[str, str]:
        info = self.bundle.config.users.get(user)
        if info is None:
            return {"user": user}
        return {"user": user, "email": info.email, "phone": info.phone, "name": info.full_name or user}

    def resolve_assignee(self, assignee: m.Assignee | None, record: Record, tx: Tx) -> str:
        if assignee is None or assignee.kind == "owner":
            return record.owner or str(record.fields.get("owner") or "")
        if assignee.kind == "user":
            return assignee.value
        if assignee.kind == "field":
            return str(record.fields.get(assignee.value) or "")
        if assignee.kind == "supervisor":
            owner = record.owner or str(record.fields.get("owner") or "")
            user = self.bundle.config.users.get(owner)
            return user.supervisor if user and user.supervisor else ""
        return self.allocate(assignee.value, record, tx)

    def allocate(self, rule_name: str, record: Record, tx: Tx) -> str:
        """The rule's next user for ``record`` (see ``engine.allocation``): round robin keeps its
        position in the state; least loaded counts the open records of ``record``'s object owned."""
        rule = self.bundle.rules.get(rule_name)
        if rule is None or not rule.users:
            raise ActionError(f"allocation rule '{rule_name}' has no users")
        counts = None
        if rule.strategy == "least_loaded":
            counts = tx.open_owned(record.object, rule.users, self.final_stages(record.object))
        user, state = pick(rule.strategy, rule.users, tx.allocation(rule_name), counts)
        tx.put_allocation(rule_name, state)
        return user

    def final_stages(self, object: str) -> tuple[tuple[str, str], ...]:
        """(pipeline, stage) of every final stage of ``object``'s pipelines."""
        found = self._final.get(object)
        if found is None:
            found = self._final[object] = tuple(
                (p.name, s.id) for p in self.bundle.pipelines_for(object) for s in p.stages if s.final
            )
        return found

    # ------------------------------------------------------------------ the actions

    def perform(
        self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx, key: str, run_id: str
    ) -> Outcome:
        params, new_record = _HANDLERS[action.type](self, action, record, context, tx)
        channel = self._channels.get(id(action))
        if channel is None:  # it depends on the action and the bundle only: worked out once
            template = self.bundle.templates.get(action.template) if action.template else None
            channel = "" if action.type in STORE_ONLY else self.channel_for(action, template)
            self._channels[id(action)] = channel
        if action.template:
            params = {"template": action.template, **params}
        fallback = self._fallback(channel, context)
        if fallback:
            params = {**params, "fallback": fallback}
        if action.recipients:
            return self._to_each(action, record, context, key, run_id, channel, params)
        effect = _effect(
            _BLANK,
            key=key,
            action=action.type,
            run_id=run_id,
            object=record.object,
            record_id=record.id,
            channel=channel,
            params=params,
        )
        return Outcome(effect=effect, record=new_record)

    def _to_each(
        self,
        action: m.Action,
        record: Record,
        context: Mapping[str, Any],
        key: str,
        run_id: str,
        channel: str,
        params: Mapping[str, Any],
    ) -> Outcome:
        """One message per distinct recipient, rendered once. The first keeps the action's key
        and the n-th is ``<key>.<n>``: the same run step gives the same keys, so a retry, a crash
        or a replay never sends anyone a message twice."""
        found = recipients.resolve(action.type, action.recipients, record, context, self.bundle, render)
        if not found.addresses:
            raise ActionError(f"{action.type} found nobody to send to ({', '.join(found.missing)} gave no address)")
        effects = []
        for n, address in enumerate(found.addresses, start=1):
            to = {"to": address, **self.user_contact(address)} if action.type == "notify" else {"to": address}
            effects.append(
                _effect(
                    _BLANK,
                    key=key if n == 1 else f"{key}.{n}",
                    action=action.type,
                    run_id=run_id,
                    object=record.object,
                    record_id=record.id,
                    channel=channel,
                    params={**params, **to},
                )
            )
        return Outcome(effect=effects[0], more=tuple(effects[1:]), missing=found.missing)

    def _fallback(self, channel: str, context: Mapping[str, Any]) -> dict[str, Any] | None:
        """A ``zalo_zns`` channel's fallback, rendered now (the sender has no record to render
        it with): where to send the message instead if ZNS refuses the phone for good."""
        spec = self.bundle.channels.get(channel) if channel else None
        if spec is None or spec.type != "zalo_zns" or spec.fallback is None:
            return None
        name = spec.fallback.template
        with named(f"template '{name}'"):
            text = render(self.template(name).text, context)
        return {"channel": spec.fallback.channel, "template": name, "text": text}

    def _message(self, action: m.Action, context: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if action.template:
            template = self.template(action.template)
            with named(f"template '{action.template}'"):  # a limit error names the template and its line
                if template.subject:
                    out["subject"] = render(template.subject, context)
                if template.text:
                    out["text"] = render(template.text, context)
                if template.html:
                    out["html"] = render_html(template.html, context)
                if template.template_id:  # a Zalo ZNS template: its id and its parameters, rendered
                    out["template_id"] = template.template_id
                    out["template_data"] = {k: render(v, context) for k, v in template.template_data.items()}
        if action.text:
            out["text"] = render(action.text, context)
        return out

    @_handles("send_email")
    def _send_email(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        params: dict[str, Any] = {"to": render(action.to, context) if action.to else _field(record, "email")}
        for key in ("cc", "bcc"):
            if value := getattr(action, key):
                params[key] = render(value, context)
        params.update(self._message(action, context))
        attachments = []
        for attach in action.attach:
            doc = self.template(attach.template)
            ext = {"pdf": "pdf", "html": "html", "original": "html" if doc.html else "txt"}[attach.format]
            filename = render(attach.filename, context) if attach.filename else f"{attach.template}.{ext}"
            with named(f"template '{attach.template}'"):
                attachments.append(
                    {
                        "template": attach.template,
                        "format": attach.format,
                        "filename": filename,
                        "title": render(doc.subject, context) if doc.subject else attach.template,
                        **(
                            {"html": render_html(doc.html, context)}
                            if doc.html
                            else {"text": render(doc.text, context)}
                        ),
                    }
                )
        if attachments:
            params["attachments"] = attachments
        return params, None

    @_handles("send_sms")
    def _send_sms(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        params: dict[str, Any] = {"to": render(action.to, context) if action.to else _field(record, "phone")}
        message = self._message(action, context)
        text = message.get("text", "")
        info = segments(text)
        params.update(text=text, encoding=info.encoding, segments=info.segments, characters=info.characters)
        if "template_id" in message:  # a Zalo ZNS template
            params.update(template_id=message["template_id"], template_data=message["template_data"])
        return params, None

    @_handles("call")
    def _call(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        params: dict[str, Any] = {"to": render(action.to, context) if action.to else _field(record, "phone")}
        params.update(self._message(action, context))
        return params, None

    @_handles("create_task")
    def _create_task(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        params: dict[str, Any] = {
            "title": render(action.title, context),
            "assignee": self.resolve_assignee(action.assignee, record, tx),
        }
        if action.description:
            params["description"] = render(action.description, context)
        if action.due:
            params["due"] = due_time(action.due, context, tx.now).isoformat()
        if action.task_type:
            params["task_type"] = action.task_type
        if action.priority:
            params["priority"] = action.priority
        if action.watchers:
            params["watchers"] = [self.resolve_assignee(w, record, tx) for w in action.watchers]
        return params, None

    def _values(self, object: str, action: m.Action, context: Mapping[str, Any], tx: Tx) -> dict[str, Any]:
        """``set:`` rendered and typed for a record of ``object``; a link to a record that is not
        there fails the action, naming the field and the id."""
        obj = self.bundle.objects.get(object)
        values = {}
        for name, value in action.set.items():
            spec = obj.fields.get(name) if obj else None
            values[name] = coerce(render_value(value, context), spec)
        problem = missing_ref(tx, obj, values)
        if problem:
            raise ActionError(problem)
        return values

    @_handles("update_fields")
    def _update_fields(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        if action.target:  # the linked record this ref field names is the one changed
            obj = self.bundle.objects.get(record.object)
            ref = obj.fields.get(action.target) if obj is not None else None
            if ref is None or ref.type != "ref":
                raise ActionError(f"target {action.target} is not a ref field of {record.object}")
            object = ref.object
            linked = tx.record(object, str(record.fields.get(action.target) or ""))
            if linked is None or linked.deleted:
                link = record.fields.get(action.target)
                raise ActionError(f"target {action.target} links to no live {object} (it holds {link!r})")
            params, new = self._update(action, linked, context, tx)
            return {"target": action.target, "target_id": linked.id, **params}, new
        return self._update(action, record, context, tx)

    def _update(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        values = self._values(record.object, action, context, tx)
        # ``stage`` is the record's built-in stage, not a field: setting it is a move.
        fields = {**record.fields, **{k: v for k, v in values.items() if k != "stage"}}
        new = replace(record, fields=fields, version=record.version + 1)
        if "owner" in values:
            new = replace(new, owner=str(values["owner"] or ""))
        if values.get("stage"):
            new = replace(new, stage=str(values["stage"]))
        return {"set": values}, new

    @_handles("move_stage")
    def _move_stage(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        stage = render(action.stage, context)
        pipeline = action.pipeline or record.pipeline
        new = replace(record, stage=stage, pipeline=pipeline, version=record.version + 1)
        return {"stage": stage, "from": record.stage}, new

    @_handles("handover")
    def _handover(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        user = self.resolve_assignee(action.assignee, record, tx)
        if not user:
            raise ActionError("handover found nobody to hand the record to")
        new = replace(record, owner=user, fields={**record.fields, "owner": user}, version=record.version + 1)
        return {"assignee": user, "from": record.owner}, new

    @_handles("notify")
    def _notify(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        params: dict[str, Any] = self._message(action, context)
        if not action.recipients:  # else ``perform`` addresses each recipient (``engine.recipients``)
            user = self.resolve_assignee(action.assignee or m.Assignee(kind="owner"), record, tx)
            params = {"to": user, **self.user_contact(user), **params}
            params["to"] = user
        if action.title:
            params["title"] = render(action.title, context)
        return params, None

    @_handles("create_document")
    def _create_document(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        doc = self.template(action.template)
        with named(f"template '{action.template}'"):
            body = render_html(doc.html, context) if doc.html else render(doc.text, context)
        ext = {"pdf": "pdf", "html": "html", "original": "html" if doc.html else "txt"}[action.format]
        name = action.save_as or action.template
        params = {
            "format": action.format,
            "save_as": name,
            "filename": f"{name}.{ext}",
            "html" if doc.html else "text": body,
        }
        if doc.subject:
            params["title"] = render(doc.subject, context)
        return params, None

    @_handles("webhook")
    def _webhook(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        params: dict[str, Any] = {"method": action.method}
        if action.url:
            params["url"] = render(action.url, context)
        body = action.body if action.body is not None else {"object": "{{ record.object }}", "id": "{{ record.id }}"}
        params["body"] = render_value(body, context)
        if action.headers:
            params["headers"] = {k: render(v, context) for k, v in action.headers.items()}
        return params, None

    @_handles("add_care_card")
    def _add_care_card(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        owner = self.resolve_assignee(action.assignee, record, tx)
        params: dict[str, Any] = {"owner": owner, "notify_owner": action.notify_owner}
        if action.care_date:
            params["care_date"] = due_time(action.care_date, context, tx.now).date().isoformat()
        if action.layout:
            params["layout"] = action.layout
        if action.title:
            params["title"] = render(action.title, context)
        if action.set:
            params["fields"] = {k: render_value(v, context) for k, v in action.set.items()}
        return params, None

    @_handles("create_record")
    def _create_record(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        """A new record, its id derived from the run and the action (``tx.acting``): performed
        again by a retry or a replay, it finds the record made the first time and makes none."""
        # a template that renders nothing ("{{ record.email }}" of a record without one) sets nothing
        values = {k: v for k, v in self._values(action.object, action, context, tx).items() if v != ""}
        stage = render(action.stage, context)
        problems = check_fields(self.bundle, action.object, values, complete=True)
        problems += check_stage(self.bundle, action.object, stage, action.pipeline)
        if problems:
            raise ActionError(f"cannot create {action.object}: {'; '.join(problems)}")
        scope, node = tx.acting
        new_id = created_id(scope, action.save_as or node)
        params: dict[str, Any] = {"created_object": action.object, "created_id": new_id, "set": values}
        if tx.record(action.object, new_id) is not None:
            return {**params, "existing": True}, None
        owner = str(values.get("owner") or record.owner or "")
        fields = {**values, "owner": owner} if owner else values
        new = Record(object=action.object, id=new_id, fields=fields, stage=stage, pipeline=action.pipeline)
        new = replace(new, owner=owner, version=1)
        return params, new

    @_handles("add_note")
    def _add_note(self, action: m.Action, record: Record, context: Mapping[str, Any], tx: Tx) -> Rendered:
        """A note on the record's timeline: the store keeps it with the step (keyed by the
        effect, so a retried step writes it once); nothing leaves through a channel."""
        return {"text": render(action.text, context)}, None


_UNHANDLED = set(m.ACTION_TYPES) - set(_HANDLERS)
assert not _UNHANDLED, f"action types without a handler in engine/actions.py: {sorted(_UNHANDLED)}"


def coerce(value: Any, spec: m.FieldSpec | None) -> Any:
    """A rendered value as the field's declared type: templates render text, but ``score: "{{
    record.score + 1 }}"`` must store the number 2, or the next ``record.score + 1`` fails.

    Empty text becomes None for number, integer, money and boolean fields; text that is not of
    the type raises :class:`ActionError` naming the field.
    """
    if spec is None or not isinstance(value, str) or spec.type not in ("number", "integer", "money", "boolean"):
        return value
    text = value.strip()
    if not text or text == "None":
        return None
    if spec.type == "boolean":
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise ActionError(f"field {spec.name} ({spec.type}): '{value}' is not true or false")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise ActionError(f"field {spec.name} ({spec.type}): '{value}' is not a number") from None
    if spec.type != "integer":
        return number
    if not number.is_integer():
        raise ActionError(f"field {spec.name} ({spec.type}): '{value}' is not a whole number")
    return int(number)


def _field(record: Record, name: str) -> str:
    value = record.fields.get(name)
    return "" if value is None else str(value)


def due_time(text: str, context: Mapping[str, Any], now: datetime) -> datetime:
    """A due moment: a duration from now (``1d``) or a rendered date/datetime (``{{ record.x }}``)."""
    try:
        return now + parse_duration(text)
    except DurationError:
        pass
    rendered = render(text, context).strip()
    try:
        moment = datetime.fromisoformat(rendered)
    except ValueError as exc:
        raise ActionError(f"due '{text}' rendered to '{rendered}', which is neither a duration nor a date") from exc
    if moment.tzinfo is None:  # a wall time in the Config's zone (what ``now`` in templates is in)
        local = context.get("now")
        moment = moment.replace(tzinfo=local.tzinfo if isinstance(local, datetime) else now.tzinfo)
    return moment  # a bare date is the start of that day
