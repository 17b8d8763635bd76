"""Raw YAML documents (already checked against the JSON Schema) to the typed model.

The schema guarantees the shapes, so this module only translates names (``if`` → ``if_``,
``from`` → ``sender``), fills defaults, parses durations and reads template files. Problems
that the schema cannot see here (a bad duration, a missing template file) become issues; the
builder never raises on user input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from flowctl.spec import model as m
from flowctl.spec.calendars import Calendar, CalendarError, calendar_errors, parse_calendar
from flowctl.spec.durations import DurationError, parse_duration
from flowctl.spec.issues import Issue, error
from flowctl.spec.loader import VALUE, RawDocument
from flowctl.spec.places import Where
from flowctl.spec.recipients import recipients as _recipients


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _delay_calendar(delay: Any) -> str:
    """The calendar of a rule's ``delay: {for: 4h, calendar: office}`` ('' for a plain duration)."""
    return _str(delay.get("calendar")) if isinstance(delay, dict) else ""


def _strs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(_str(v) for v in value)
    return (_str(value),)


@dataclass
class Builder:
    """Builds model documents; collects issues instead of raising."""

    root: Path
    issues: list[Issue] = field(default_factory=list)
    _files: dict[Path, str | None] = field(default_factory=dict)

    # ---------------------------------------------------------------- helpers

    def duration(self, value: Any, where: Where, *key: str | int, code: str = "E060") -> m.Duration | None:
        if value is None or value == "":
            return None
        try:
            return m.Duration(text=_str(value), value=parse_duration(value))
        except DurationError as exc:
            hint = "e.g. 30m, 2h, 3d, 1w or 1d12h" + (" (a leading - counts back: -2h)" if code != "E060" else "")
            self.issues.append(error(code, str(exc), where.at(*key), hint))
            return None

    def read_file(self, name: str, doc: RawDocument, where: Where, key: str) -> str:
        """Read a template file next to the document, else under the directory's templates/."""
        base = doc.path.parent if doc.path else self.root
        candidates = [base / name, self.root / name, self.root / "templates" / name]
        for path in candidates:
            if path not in self._files:
                try:
                    self._files[path] = path.read_text(encoding="utf-8") if path.is_file() else None
                except (OSError, UnicodeDecodeError):
                    self._files[path] = None
            text = self._files[path]
            if text is not None:
                return text
        self.issues.append(
            error(
                "E091",
                f"template file '{name}' not found",
                where.at(key),
                f"put it next to {doc.file} or under templates/, or fix the name",
            )
        )
        return ""

    # ---------------------------------------------------------------- entry point

    def build(self, doc: RawDocument) -> m.Document | None:
        data = doc.data
        kind = data["kind"]
        meta = data.get("metadata") or {}
        metadata = m.Metadata(
            name=_str(meta.get("name")),
            description=_str(meta.get("description")),
            labels=m.frozen_map({str(k): _str(v) for k, v in (meta.get("labels") or {}).items()}),
        )
        where = Where(doc.file, (), doc.marks)
        spec = data.get("spec") or {}
        sw = where.child("spec")
        method = getattr(self, f"build_{kind.lower()}", None)
        if method is None:
            return None
        return cast(m.Document, method(metadata, spec, sw, doc))

    # ---------------------------------------------------------------- kinds

    def build_config(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.Config:
        limits = spec.get("limits") or {}
        users = {
            name: m.User(
                name=name,
                full_name=_str(u.get("full_name")),
                email=_str(u.get("email")),
                phone=_str(u.get("phone")),
                supervisor=_str(u.get("supervisor")),
            )
            for name, u in (spec.get("users") or {}).items()
        }
        return m.Config(
            metadata=meta,
            where=w,
            database=_str(spec.get("database", "sqlite:///flowctl.db")),
            timezone=_str(spec.get("timezone", "UTC")),
            phone_region=_str(spec.get("phone_region", "VN")),
            listen=_str(spec.get("listen", "127.0.0.1:8080")),
            api_token=_str(spec.get("api_token")),
            access=tuple(
                m.AccessEntry(
                    name=_str(entry.get("name")),
                    token=_str(entry.get("token")),
                    role=_str(entry.get("role")),
                    objects=_strs(entry["objects"]) if "objects" in entry else None,
                    where=w.child("access", i),
                )
                for i, entry in enumerate(spec.get("access") or ())
            ),
            limits=m.Limits(**{k: int(v) for k, v in limits.items()}),
            retention=self.retention(spec.get("retention") or {}, w.child("retention")),
            users=m.frozen_map(users),
            calendars=self.calendars(spec.get("calendars") or {}, w.child("calendars"), _str(spec.get("timezone"))),
        )

    def calendars(self, raw: Mapping[str, Any], w: Where, timezone: str) -> Mapping[str, Calendar]:
        """Readable calendars by name; each bad field of the others is an issue (E115-E118)."""
        if not timezone or calendar_errors("", {"timezone": timezone}, "UTC"):
            timezone = "UTC"  # a bad Config timezone is E062 already: do not report it per calendar
        out = {}
        for name, entry in raw.items():
            cw = w.child(name)
            problems = calendar_errors(name, entry or {}, timezone)
            for problem in problems:
                place = (problem.field, VALUE) if problem.index is None else (problem.field, problem.index)
                message = f"calendar '{name}': {problem.message}"
                self.issues.append(error(problem.code, message, cw.at(*place), problem.hint))
            if not problems:
                try:
                    out[name] = parse_calendar(name, entry or {}, timezone)
                except CalendarError:  # pragma: no cover - calendar_errors found nothing
                    continue
        return m.frozen_map(out)

    def retention(self, raw: Mapping[str, Any], w: Where) -> m.Retention:
        kept = {name: self.duration(value, w, name) for name, value in raw.items()}
        for name, d in kept.items():
            if d is not None and d.value <= timedelta(0):
                message = f"retention.{name} is {d.text}: a retention must be longer than 0"
                hint = "e.g. 7d, 30d or 2h (a leading - is not allowed)"
                self.issues.append(error("E060", message, w.at(name, VALUE), hint))
        return m.Retention(**{n: d.value for n, d in kept.items() if d is not None and d.value > timedelta(0)})

    def build_objecttype(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.ObjectType:
        fields = {}
        for name, raw in (spec.get("fields") or {}).items():
            fw = w.child("fields", name)
            raw = {"type": raw} if isinstance(raw, str) else (raw or {})
            fields[name] = m.FieldSpec(
                name=name,
                type=_str(raw.get("type", "string")),
                required=bool(raw.get("required", False)),
                label=_str(raw.get("label")),
                values=_strs(raw.get("values")),
                object=_str(raw.get("object")),
                where=fw,
            )
        return m.ObjectType(
            metadata=meta,
            where=w,
            label=_str(spec.get("label")),
            fields=m.frozen_map(fields),
            write_back=_write_back(spec.get("write_back"), w.child("write_back")),
        )

    def build_flow(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.Flow:
        nodes = {
            node_id: self.node(node_id, raw or {}, w.child("nodes", node_id))
            for node_id, raw in (spec.get("nodes") or {}).items()
        }
        trigger = spec.get("trigger")
        return m.Flow(
            metadata=meta,
            where=w,
            object=_str(spec.get("object")),
            trigger=self.trigger(trigger, w.child("trigger")) if trigger else None,
            enabled=bool(spec.get("enabled", True)),
            mode=_str(spec.get("mode", "single")),
            max_parallel=int(spec.get("max_parallel", 10)),
            start=_str(spec.get("start")),
            nodes=m.frozen_map(nodes),
        )

    def build_pipeline(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.Pipeline:
        stages = []
        for i, raw in enumerate(spec.get("stages") or []):
            sw = w.child("stages", i)
            rules = []
            for j, rule in enumerate(raw.get("rules") or []):
                rw = sw.child("rules", j)
                rules.append(self.rule(rule, rw, _str(rule.get("name")) or f"{raw['id']}#{j + 1}"))
            triggers = tuple(self.trigger(t, sw.child("triggers", k)) for k, t in enumerate(raw.get("triggers") or []))
            stages.append(
                m.Stage(
                    id=_str(raw.get("id")),
                    name=_str(raw.get("name")),
                    fields=_strs(raw.get("fields")),
                    rules=tuple(rules),
                    triggers=triggers,
                    final=cast(Any, _str(raw.get("final"))),
                    where=sw,
                )
            )
        return m.Pipeline(metadata=meta, where=w, object=_str(spec.get("object")), stages=tuple(stages))

    def build_careprocess(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.CareProcess:
        when = spec.get("when") or {}
        ww = w.child("when")
        defaulted = tuple(key for key in ("on_missed", "grace", "feb29", "dst_gap", "dst_overlap") if key not in spec)
        actions = tuple(
            self.action(a, w.child("actions", i), _str(a.get("action")))
            for i, a in enumerate(spec.get("actions") or [])
        )
        return m.CareProcess(
            metadata=meta,
            where=w,
            object=_str(spec.get("object")),
            enabled=bool(spec.get("enabled", True)),
            priority=int(spec.get("priority", 100)),
            when=m.CareWhen(
                anniversary_of=_str(when.get("anniversary_of")),
                date=_str(when.get("date")),
                cron=_str(when.get("cron")),
                offset=self.duration(when.get("offset"), ww, "offset"),
                at=_str(when.get("at", "09:00")),
                where=ww,
            ),
            if_=_str(spec.get("if")),
            feb29=spec.get("feb29", "feb28"),
            on_missed=spec.get("on_missed", "catch_up"),
            grace=self.duration(spec.get("grace", "24h"), w, "grace"),
            dst_gap=spec.get("dst_gap", "shift"),
            dst_overlap=spec.get("dst_overlap", "once"),
            actions=actions,
            defaulted=defaulted,
        )

    def build_template(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.Template:
        text = _str(spec.get("text"))
        html = _str(spec.get("html"))
        if spec.get("text_file"):
            text = self.read_file(_str(spec["text_file"]), doc, w, "text_file")
        if spec.get("html_file"):
            html = self.read_file(_str(spec["html_file"]), doc, w, "html_file")
        return m.Template(
            metadata=meta,
            where=w,
            channel=_str(spec.get("channel")),
            subject=_str(spec.get("subject")),
            text=text,
            html=html,
            text_file=_str(spec.get("text_file")),
            html_file=_str(spec.get("html_file")),
            template_id=_str(spec.get("template_id")),
            template_data=m.frozen_map({str(k): _str(v) for k, v in (spec.get("template_data") or {}).items()}),
        )

    def build_channel(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.Channel:
        quiet = spec.get("quiet_hours")
        fallback = spec.get("fallback")
        policy = m.SendPolicy(
            rate=_str(spec.get("rate")),
            quiet_hours=m.QuietHours(
                start=_str(quiet.get("start")), end=_str(quiet.get("end")), timezone=_str(quiet.get("timezone"))
            )
            if quiet
            else None,
            daily_budget=int(spec.get("daily_budget", 0)),
            per_recipient=_str(spec.get("per_recipient")),
        )
        return m.Channel(
            metadata=meta,
            where=w,
            type=spec.get("type", "log"),
            host=_str(spec.get("host")),
            port=int(spec.get("port", 0)),
            security=spec.get("security", "starttls"),
            username=_str(spec.get("username")),
            password=_str(spec.get("password")),
            sender=_str(spec.get("from")),
            url=_str(spec.get("url")),
            method=_str(spec.get("method", "POST")).upper(),
            headers=m.frozen_map({str(k): _str(v) for k, v in (spec.get("headers") or {}).items()}),
            body=spec.get("body"),
            timeout=self.duration(spec.get("timeout"), w, "timeout"),
            app_id=_str(spec.get("app_id")),
            secret_key=_str(spec.get("secret_key")),
            refresh_token=_str(spec.get("refresh_token")),
            token_url=_str(spec.get("token_url")),
            fallback=m.ChannelFallback(channel=_str(fallback.get("channel")), template=_str(fallback.get("template")))
            if isinstance(fallback, Mapping)
            else None,
            max_attempts=int(spec.get("max_attempts", 8)),
            policy=policy,
        )

    def build_source(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.Source:
        """A Source; ``auth`` is a scheme name or a mapping (``type`` and the scheme's options)."""
        raw_auth = spec.get("auth")
        options: Mapping[str, Any] = raw_auth if isinstance(raw_auth, Mapping) else {}
        secret = options.get("secret", spec.get("secret"))
        scheme = options.get("type", "hmac") if options else raw_auth
        return m.Source(
            metadata=meta,
            where=w,
            type=spec.get("type", "webhook"),
            path=_str(spec.get("path")),
            auth=scheme or ("hmac" if secret else "none"),
            secret=_str(secret),
            auth_options=tuple(str(key) for key in options),
            auth_field=_str(options.get("field")),
            app_id=_str(options.get("app_id")),
            signature_header=_str(options.get("signature_header", spec.get("signature_header", "X-Signature"))),
            max_bytes=int(spec.get("max_bytes", 1_048_576)),
            map=m.frozen_map(spec.get("map") or {}),
            fetch=self.source_fetch(spec.get("fetch"), w),
            url=_str(spec.get("url")),
            table=_str(spec.get("table")),
            key=_str(spec.get("key", "id")),
            cursor=_strs(spec.get("cursor")),
            interval=self.duration(spec.get("interval", "30s"), w, "interval"),
            object=_str(spec.get("object")),
        )

    def source_fetch(self, spec: Any, w: Where) -> m.SourceFetch | None:
        if not isinstance(spec, Mapping):
            return None
        return m.SourceFetch(
            url=_str(spec.get("url")),
            method="GET" if _str(spec.get("method", "POST")).upper() == "GET" else "POST",
            params=m.frozen_map(spec.get("params") or {}),
            timeout=self.duration(spec.get("timeout"), w, "fetch", "timeout"),
            retries=int(spec.get("retries", 3)) if isinstance(spec.get("retries", 3), int) else 3,
        )

    def build_allocationrule(
        self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument
    ) -> m.AllocationRule:
        return m.AllocationRule(
            metadata=meta, where=w, strategy=spec.get("strategy", "round_robin"), users=_strs(spec.get("users"))
        )

    def build_test(self, meta: m.Metadata, spec: Mapping[str, Any], w: Where, doc: RawDocument) -> m.Test:
        records = tuple(
            self.test_record(r, w.child("records", i), doc) for i, r in enumerate(spec.get("records") or [])
        )
        steps = tuple(self.test_step(s, w.child("steps", i), doc) for i, s in enumerate(spec.get("steps") or []))
        return m.Test(metadata=meta, where=w, now=_str(spec.get("now")), records=records, steps=steps)

    # ---------------------------------------------------------------- parts

    def rule(self, raw: Mapping[str, Any], w: Where, name: str) -> m.Rule:
        """A stage rule; ``delay`` is a duration or a mapping (``for`` and ``calendar``, or ``until``
        and ``offset``)."""
        delay = raw.get("delay")
        mapped = isinstance(delay, Mapping)
        timing: Mapping[str, Any] = delay if isinstance(delay, Mapping) else {"for": delay}
        wait = raw.get("wait")
        return m.Rule(
            name=name,
            action=self.action(raw, w, _str(raw.get("action"))),
            after=_strs(raw.get("after")),
            delay=self.duration(timing.get("for"), w, *(("delay", "for") if mapped else ("delay",))),
            delay_calendar=_delay_calendar(delay),
            delay_until=_str(timing.get("until")),
            delay_offset=self.duration(timing.get("offset"), w, "delay", "offset", code="E111"),
            wait=self.rule_wait(wait, w.child("wait")) if isinstance(wait, Mapping) else None,
            on_timeout=_str(raw.get("on_timeout")),
            if_=_str(raw.get("if")),
            where=w,
        )

    def rule_wait(self, raw: Mapping[str, Any], w: Where) -> m.RuleWait:
        return m.RuleWait(
            event=_str(raw.get("event")),
            changed=_strs(raw.get("changed")),
            for_=self.duration(raw.get("for"), w, "for"),
            where=w,
        )

    def trigger(self, raw: Mapping[str, Any], w: Where) -> m.Trigger:
        return m.Trigger(
            on=_str(raw.get("on")),
            changed=_strs(raw.get("changed")),
            event=_str(raw.get("event")),
            from_stage=_str(raw.get("from")),
            to_stage=_str(raw.get("to")),
            if_=_str(raw.get("if")),
            allow_backward=bool(raw.get("allow_backward", False)),
            where=w,
        )

    def node(self, node_id: str, raw: Mapping[str, Any], w: Where) -> m.Node:
        node_type = _str(raw.get("type"))
        action = None
        if node_type not in m.CONTROL_NODE_TYPES:
            action = self.action(raw, w, node_type)
        branches = tuple(
            m.Branch(if_=_str(b.get("if")), next=_str(b.get("next")), where=w.child("branches", i))
            for i, b in enumerate(raw.get("branches") or [])
        )
        return m.Node(
            id=node_id,
            type=node_type,
            next=_str(raw.get("next")),
            branches=branches,
            default=_str(raw.get("default")),
            for_=self.duration(raw.get("for"), w, "for"),
            calendar=_str(raw.get("calendar")) if node_type == "delay" else "",
            until=_str(raw.get("until")),
            offset=self.duration(raw.get("offset"), w, "offset", code="E111") if node_type == "delay" else None,
            event=_str(raw.get("event")) if node_type == "wait_event" else "",
            if_=_str(raw.get("if")) if node_type == "wait_event" else "",
            on_timeout=_str(raw.get("on_timeout")),
            target=_str(raw.get("node")) if node_type == "goto" else "",
            max_visits=int(raw.get("max_visits", 0)),
            flow=_str(raw.get("flow")) if node_type == "goto_flow" else "",
            action=action,
            where=w,
        )

    def assignee(self, raw: Any, w: Where) -> m.Assignee | None:
        if raw is None or raw == "":
            return None
        if isinstance(raw, str):
            if raw in ("owner", "supervisor"):
                return m.Assignee(kind=cast(Any, raw), where=w)
            return m.Assignee(kind="user", value=raw, where=w)
        for kind in ("user", "rule", "field"):
            if kind in raw:
                return m.Assignee(kind=cast(Any, kind), value=_str(raw[kind]), where=w)
        return None

    def action(self, raw: Mapping[str, Any], w: Where, action_type: str) -> m.Action:
        attach = []
        for i, a in enumerate(raw.get("attach") or []):
            a = {"template": a} if isinstance(a, str) else a
            attach.append(
                m.Attachment(
                    template=_str(a.get("template")),
                    format=a.get("format", "pdf"),
                    filename=_str(a.get("filename")),
                    where=w.child("attach", i),
                )
            )
        recipients = _recipients(raw.get("to"), w.child("to"), action_type)
        person_key = {"handover": "to", "notify": "to", "add_care_card": "owner"}.get(action_type, "assignee")
        assignee = None if recipients else self.assignee(raw.get(person_key), w.child(person_key))
        to = "" if person_key == "to" or recipients else _str(raw.get("to"))
        watchers = tuple(
            a
            for i, item in enumerate(raw.get("watchers") or [])
            if (a := self.assignee(item, w.child("watchers", i))) is not None
        )
        due = raw.get("due")
        return m.Action(
            type=action_type,
            template=_str(raw.get("template")),
            text=_str(raw.get("text")),
            to=to,
            cc=_str(raw.get("cc")),
            bcc=_str(raw.get("bcc")),
            channel=_str(raw.get("channel")),
            attach=tuple(attach),
            title=_str(raw.get("title")),
            description=_str(raw.get("description")),
            due=_str(due),
            task_type=_str(raw.get("task_type")),
            priority=_str(raw.get("priority")),
            assignee=assignee,
            watchers=watchers,
            set=m.frozen_map(raw.get("set") or {}),
            stage=_str(raw.get("stage")),
            pipeline=_str(raw.get("pipeline")),
            format=raw.get("format", "pdf"),
            save_as=_str(raw.get("save_as")),
            url=_str(raw.get("url")),
            method=_str(raw.get("method", "POST")).upper(),
            body=raw.get("body"),
            headers=m.frozen_map({str(k): _str(v) for k, v in (raw.get("headers") or {}).items()}),
            care_date=_str(raw.get("care_date")),
            layout=_str(raw.get("layout")),
            notify_owner=bool(raw.get("notify_owner", False)),
            only_during=_str(raw.get("only_during")),
            recipients=recipients,
            object=_str(raw.get("object")),
            target=_str(raw.get("target")),
            where=w,
        )

    def test_record(self, raw: Mapping[str, Any], w: Where, doc: RawDocument) -> m.TestRecord:
        fields = raw.get("fields") or {}
        texts = {name: doc.texts[path] for name in fields if (path := (*w.path, "fields", name)) in doc.texts}
        return m.TestRecord(
            object=_str(raw.get("object")),
            id=_str(raw.get("id")),
            fields=m.frozen_map(fields),
            stage=_str(raw.get("stage")),
            pipeline=_str(raw.get("pipeline")),
            texts=m.frozen_map(texts) if texts else m.EMPTY,
            where=w,
        )

    def test_step(self, raw: Mapping[str, Any], w: Where, doc: RawDocument) -> m.TestStep:
        ((op, body),) = raw.items()
        sw = w.child(op)
        if op in ("create", "update", "delete", "restore", "move"):
            return m.TestStep(op=op, record=self.test_record(body, sw, doc), where=sw)
        if op == "event":
            return m.TestStep(
                op=op,
                event=_str(body.get("event")),
                record=self.test_record(body, sw, doc),
                data=m.frozen_map(body.get("data") or {}),
                where=sw,
            )
        if op == "advance":
            if isinstance(body, Mapping):
                return m.TestStep(op=op, by=self.duration(body.get("by"), sw, "by"), to=_str(body.get("to")), where=sw)
            return m.TestStep(op=op, by=self.duration(body, w, op), where=sw)
        # expect
        effects = body.get("effects")
        record = body.get("record")
        refused = body.get("refused")
        return m.TestStep(
            op="expect",
            effects=None if effects is None else tuple(m.frozen_map(e) for e in effects),
            exactly=body.get("exactly") is True,
            expect_record=None if record is None else m.frozen_map(record),
            refused=None if refused is None else "" if refused is True else _str(refused),
            where=sw,
        )


def _write_back(raw: Any, w: Where) -> m.WriteBack | None:
    """An ObjectType's ``write_back:`` (None when absent); names map to text both ways."""
    if not isinstance(raw, Mapping):
        return None

    def names(key: str) -> Mapping[str, str]:
        return m.frozen_map({str(k): _str(v) for k, v in (raw.get(key) or {}).items()})

    return m.WriteBack(
        channel=_str(raw.get("channel")),
        entity=_str(raw.get("entity", "deal")),
        fields=names("fields"),
        stages=names("stages"),
        users=names("users"),
        where=w,
    )
