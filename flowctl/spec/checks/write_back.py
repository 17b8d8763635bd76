"""Write-back to a CRM: an ObjectType's ``write_back:`` and the ``bitrix24`` channel (E140–E145).

``write_back:`` names a ``bitrix24`` channel that exists, and maps only fields the ObjectType
declares, stages its pipelines have and users Config knows: a name that matches nothing would
silently never be written back. A ``bitrix24`` channel's ``url`` is the portal's inbound webhook,
whose path holds the token, so it must be an ``${ENV}`` reference. Messages never repeat a URL.
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import hint_with, name_span, value_span
from flowctl.spec.dependencies import needs_document
from flowctl.spec.issues import Issue, error

EXAMPLE_URL = '"${B24_WEBHOOK_URL}"'


def check_write_back(bundle: m.Bundle) -> Iterator[Issue]:
    """E140–E145: what ``write_back:`` names exists, and bitrix24 channels keep their token out of git."""
    for channel in bundle.channels.values():
        if channel.type == "bitrix24":
            yield from _channel(channel)
    for obj in bundle.objects.values():
        if obj.write_back is not None:
            yield from _write_back(bundle, obj, obj.write_back)


def _channel(channel: m.Channel) -> Iterator[Issue]:
    url = channel.url.strip()
    if not url or "${" not in url:
        what = "has no url" if not url else "has its webhook url written as a literal (its path holds the token)"
        yield error(
            "E145",
            f"bitrix24 channel '{channel.name}' {what}",
            value_span(channel.where, "url") if url else name_span(channel),
            f"write url: {EXAMPLE_URL} and set the variable to the portal's inbound webhook "
            "(https://<portal>/rest/<user>/<token>/) where flowctl runs; rotate a token that was committed",
        )


def _write_back(bundle: m.Bundle, obj: m.ObjectType, spec: m.WriteBack) -> Iterator[Issue]:
    owner = f"write_back of object type '{obj.name}'"
    channel = bundle.channels.get(spec.channel)
    crm = [name for name, c in bundle.channels.items() if c.type == "bitrix24"]
    if channel is None:
        yield error(
            "E140",
            f"{owner} names channel '{spec.channel}', which is not defined",
            value_span(spec.where, "channel"),
            hint_with("define a Channel of type bitrix24, or name one", spec.channel, crm),
            needs=needs_document("Channel", spec.channel),
        )
    elif channel.type != "bitrix24":
        yield error(
            "E141",
            f"{owner} names channel '{spec.channel}', which is of type {channel.type}, not bitrix24",
            value_span(spec.where, "channel"),
            hint_with("name a Channel of type bitrix24", spec.channel, crm),
        )
    for name in spec.fields:
        if name not in obj.fields and name not in ("owner",):
            yield error(
                "E142",
                f"{owner} maps field '{name}', which '{obj.name}' does not declare",
                spec.where.at("fields", name),
                hint_with(f"map a field of '{obj.name}'", name, obj.fields),
            )
    stages = {stage.id for pipeline in bundle.pipelines_for(obj.name) for stage in pipeline.stages}
    for name in spec.stages:
        if name not in stages:
            yield error(
                "E143",
                f"{owner} maps stage '{name}', which no pipeline of '{obj.name}' has",
                spec.where.at("stages", name),
                hint_with(f"map a stage of a pipeline of '{obj.name}'", name, stages),
            )
    for name in spec.users:
        if name not in bundle.config.users:
            yield error(
                "E144",
                f"{owner} maps user '{name}', which Config users does not have",
                spec.where.at("users", name),
                hint_with("map a user of Config users", name, bundle.config.users),
            )
