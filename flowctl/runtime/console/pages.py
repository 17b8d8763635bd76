"""The console's pages, each a server-rendered answer over one ``Reads`` call: boards, a record's
timeline, flow and pipeline diagrams, runs and their traces, the outbox (with retry and cancel for
operators), the recycle bin (with restore for operators), care, deployments and health.

A page asked with ``?fragment=1`` answers only its refreshing region (boards and runs), which
``static/refresh.js`` swaps in every 2 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flowctl.runtime.console.app import Console, Page
from flowctl.runtime.console.layout import diagram
from flowctl.runtime.console.restoring import restore
from flowctl.runtime.console.session import PATH, Who
from flowctl.runtime.reads.common import zone_of
from flowctl.sources.errors import BadRequest, Forbidden
from flowctl.spec.durations import format_duration
from flowctl.spec.links import refs_of

CARDS = 20  # cards a column shows before its "more" link
PAGE = 50  # rows of a list page


def fragment(request: Request) -> bool:
    return request.query_params.get("fragment", "") == "1"


def query(request: Request, *names: str) -> dict[str, str]:
    """The named query parameters, stripped ('' when absent)."""
    return {name: request.query_params.get(name, "").strip() for name in names}


def moment(value: str, name: str, zone: tzinfo) -> datetime | None:
    """A ``since``/``until`` filter as a time (``2026-03-01`` or ``2026-03-01T09:00``); without an
    offset, in ``zone`` (the Config's time zone, which the pages show times in)."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{name} {value[:80]!r} is not a date or time such as 2026-03-01 or 2026-03-01T09:00"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


def link(path: str, **params: str) -> str:
    """``path`` with the non-empty ``params`` as its query (the filters a next page keeps)."""
    kept = {k: v for k, v in params.items() if v}
    return path + ("?" + urlencode(kept) if kept else "")


# ---------------------------------------------------------------------- boards


async def home(console: Console, request: Request, who: Who) -> Response:
    return RedirectResponse(PATH + "/boards", status_code=303)


async def boards(console: Console, request: Request, who: Who) -> Response:
    bundle = console.svc.bundle
    pipelines = [
        {"name": name, "object": p.object, "description": p.metadata.description, "stages": len(p.stages)}
        for name, p in sorted(bundle.pipelines.items())
    ]
    return console.render(request, "boards.html", who, page="boards", pipelines=pipelines)


async def board(console: Console, request: Request, who: Who) -> Response:
    name = request.path_params["pipeline"]
    filters = query(request, "owner", "q")
    answer = await console.read(console.reads.board, name, cards=CARDS, owner=filters["owner"], q=filters["q"])
    bundle = console.svc.bundle
    users = sorted(bundle.config.users)
    values: dict[str, Any] = {"page": "boards", "board": answer, "filters": filters, "users": users, "link": link}
    values["description"] = bundle.pipelines[name].metadata.description if name in bundle.pipelines else ""
    if fragment(request):
        return console.render(request, "board_region.html", who, **values)
    return console.render(request, "board.html", who, **values)


async def stage(console: Console, request: Request, who: Who) -> Response:
    name, stage_id = request.path_params["pipeline"], request.path_params["stage"]
    filters = query(request, "owner", "q", "cursor")
    answer = await console.read(
        console.reads.stage_cards,
        name,
        stage_id,
        limit=PAGE,
        cursor=filters["cursor"],
        owner=filters["owner"],
        q=filters["q"],
    )
    spec = console.svc.bundle.pipelines.get(name)
    return console.render(
        request,
        "stage.html",
        who,
        page="boards",
        pipeline=name,
        object=spec.object if spec else "",
        stage=stage_id,
        answer=answer,
        filters=filters,
        link=link,
    )


# ---------------------------------------------------------------------- record


async def record(console: Console, request: Request, who: Who) -> Response:
    object, record_id = request.path_params["object"], request.path_params["id"]
    answer = await console.read(console.reads.timeline, object, record_id)
    object_type = console.svc.bundle.objects.get(object)
    labels = {name: (f.label or name) for name, f in object_type.fields.items()} if object_type else {}
    values = answer["record"]["fields"]
    fields = [(name, labels[name], values[name]) for name in labels if name in values]  # as the type declares them
    fields += [(name, name, value) for name, value in sorted(values.items()) if name not in labels]
    refs = refs_of(object_type)  # a ref field's value links to the record it names
    return console.render(
        request, "record.html", who, page="boards", timeline=answer, fields=fields, refs=refs, link=link
    )


# ---------------------------------------------------------------------- flows and pipelines


async def graphs(console: Console, request: Request, who: Who) -> Response:
    bundle = console.svc.bundle
    return console.render(
        request,
        "graphs.html",
        who,
        page="flows",
        flows=sorted(bundle.flows),
        pipelines=sorted(bundle.pipelines),
    )


async def graph(console: Console, request: Request, who: Who) -> Response:
    answer = await console.read(console.reads.graph, request.path_params["name"])
    return console.render(request, "graph.html", who, page="flows", graph=answer, drawing=diagram(answer))


# ---------------------------------------------------------------------- runs


async def runs(console: Console, request: Request, who: Who) -> Response:
    filters = query(request, "status", "automation", "record", "since", "until", "cursor")
    object, _, record_id = filters["record"].partition("/")
    if filters["record"] and not record_id:
        raise BadRequest(f"record '{filters['record']}' is not OBJECT/ID, such as deal/7")
    answer = await console.read(
        console.reads.runs,
        status=filters["status"],
        automation=filters["automation"],
        object=object,
        record_id=record_id,
        since=moment(filters["since"], "since", zone_of(console.svc.bundle)),
        until=moment(filters["until"], "until", zone_of(console.svc.bundle)),
        limit=PAGE,
        cursor=filters["cursor"],
    )
    values: dict[str, Any] = {
        "page": "runs",
        "answer": answer,
        "filters": filters,
        "link": link,
        "statuses": RUN_STATUSES,
    }
    if fragment(request):
        return console.render(request, "runs_region.html", who, **values)
    return console.render(request, "runs.html", who, **values)


RUN_STATUSES: Sequence[str] = ("running", "waiting", "queued", "done", "cancelled", "failed")


async def run(console: Console, request: Request, who: Who) -> Response:
    answer = await console.read(console.reads.run, request.path_params["id"])
    return console.render(request, "run.html", who, page="runs", run=answer)


# ---------------------------------------------------------------------- outbox


OUTBOX_STATUSES: Sequence[str] = ("pending", "retry", "held", "sent", "dead", "failed", "cancelled")


async def outbox(console: Console, request: Request, who: Who) -> Response:
    filters = query(request, "status", "channel", "record", "cursor")
    object, _, record_id = filters["record"].partition("/")
    answer = await console.read(
        console.reads.outbox,
        status=filters["status"],
        channel=filters["channel"],
        object=object,
        record_id=record_id,
        limit=PAGE,
        cursor=filters["cursor"],
    )
    return console.render(
        request,
        "outbox.html",
        who,
        page="outbox",
        answer=answer,
        filters=filters,
        link=link,
        statuses=OUTBOX_STATUSES,
        channels=sorted(console.svc.bundle.channels),
        may_act=who.may("operator"),
        done=done_note(request.query_params.get("done", "")),
    )


def done_note(value: str) -> tuple[str, str] | None:
    """The note an action's redirect asks for (``retried:12``), only in the shapes it writes."""
    what, _, row = value.partition(":")
    return (what, row) if what in ("retried", "cancelled") and row.isdigit() else None


def _action(name: str) -> Page:
    async def act(console: Console, request: Request, who: Who) -> Response:
        form = await console.checked_form(request, who)
        if not who.may("operator"):
            raise Forbidden(f"{name} needs the operator role; {who.name} is {who.role}")
        row = request.path_params["row"]
        call = console.reads.retry if name == "retry" else console.reads.cancel
        await console.read(call, row)
        done = "retried" if name == "retry" else "cancelled"
        path, _, query_string = form.get("back", "").partition("?")
        kept = [(k, v) for k, v in parse_qsl(query_string) if k != "done"] if path == PATH + "/outbox" else []
        return RedirectResponse(link(PATH + "/outbox", **dict(kept), done=f"{done}:{row}"), status_code=303)

    return act


# ---------------------------------------------------------------------- recycle bin


async def recycle_bin(console: Console, request: Request, who: Who) -> Response:
    bundle = console.svc.bundle
    objects = sorted(bundle.objects)
    filters = query(request, "object", "cursor")
    object = filters["object"] or (objects[0] if objects else "")
    answer: dict[str, Any] = {"items": [], "next": None}
    if object:
        answer = await console.read(console.reads.recycle_bin, object, limit=PAGE, cursor=filters["cursor"])
    what, _, record_id = request.query_params.get("done", "").partition(":")
    return console.render(
        request,
        "recycle_bin.html",
        who,
        page="recycle_bin",
        objects=objects,
        object=object,
        answer=answer,
        filters=filters,
        link=link,
        retention=kept_for(bundle.config.retention.deleted_records),
        may_act=who.may("operator"),
        done=(what, record_id) if what in ("restored", "restore_queued") and record_id else None,
    )


def kept_for(retention: timedelta) -> tuple[str, int | str]:
    """How long the bin keeps a record, as the page says it: whole days, else ``4h``."""
    if retention % timedelta(days=1) == timedelta(0):
        return "n_days", retention.days
    return "as_is", format_duration(retention)


async def restore_record(console: Console, request: Request, who: Who) -> Response:
    await console.checked_form(request, who)
    if not who.may("operator"):
        raise Forbidden(f"restoring a record needs the operator role; {who.name} is {who.role}")
    object, record_id = request.path_params["object"], request.path_params["id"]
    if object not in console.svc.bundle.objects:
        raise BadRequest(f"unknown object type {object[:80]!r}")
    queued = await restore(console.svc, object, record_id)
    done = f"{'restored' if queued else 'restore_queued'}:{record_id}"
    return RedirectResponse(link(PATH + "/recycle-bin", object=object, done=done), status_code=303)


# ---------------------------------------------------------------------- care, deployments, health


async def care(console: Console, request: Request, who: Who) -> Response:
    answer = await console.read(console.reads.care)
    return console.render(request, "care.html", who, page="care", answer=answer)


async def deployments(console: Console, request: Request, who: Who) -> Response:
    filters = query(request, "cursor", "from", "to")
    answer = await console.read(console.reads.deployments, limit=PAGE, cursor=filters["cursor"])
    diff = None
    if filters["from"] and filters["to"]:
        diff = await console.read(console.reads.deployment_diff, filters["from"], filters["to"])
    current = next((v["id"] for v in answer["items"] if v["current"]), "")  # the newest page holds it
    return console.render(
        request,
        "deployments.html",
        who,
        page="deployments",
        answer=answer,
        diff=diff,
        current=current,
        filters=filters,
        link=link,
    )


async def health(console: Console, request: Request, who: Who) -> Response:
    answer = await console.read(console.reads.health)
    return console.render(request, "health.html", who, page="health", health=answer)


ROUTES: Sequence[tuple[str, Page, tuple[str, ...]]] = (
    ("/", home, ("GET",)),
    ("/boards", boards, ("GET",)),
    ("/boards/{pipeline}", board, ("GET",)),
    ("/boards/{pipeline}/stages/{stage}", stage, ("GET",)),
    ("/records/{object}/{id}", record, ("GET",)),
    ("/graphs", graphs, ("GET",)),
    ("/graphs/{name}", graph, ("GET",)),
    ("/runs", runs, ("GET",)),
    ("/runs/{id:path}", run, ("GET",)),
    ("/outbox", outbox, ("GET",)),
    ("/outbox/{row:int}/retry", _action("retry"), ("POST",)),
    ("/outbox/{row:int}/cancel", _action("cancel"), ("POST",)),
    ("/recycle-bin", recycle_bin, ("GET",)),
    ("/recycle-bin/{object}/{id}/restore", restore_record, ("POST",)),
    ("/care", care, ("GET",)),
    ("/deployments", deployments, ("GET",)),
    ("/health", health, ("GET",)),
)
