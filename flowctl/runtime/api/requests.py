"""Reading a request: its content type, its body within a limit, a JSON object's members, and the
record a path names. Every refusal is a :mod:`flowctl.sources.errors` class, answered by the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request

from flowctl.sources.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from flowctl.sources.payloads import NUL_PROBLEM, json_type, parse_json
from flowctl.spec import model as m

MAX_ID = 256
MAX_LIST = 1000
_JSON_TYPES = ("application/json",)


def check_content_type(request: Request, *, lenient: bool = False) -> None:
    """A body must be JSON; no Content-Type at all is read as JSON. ``lenient`` admits text/plain."""
    given = request.headers.get("content-type")
    if given is None:
        return
    media = given.partition(";")[0].strip().lower()
    if media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    if lenient and media == "text/plain":
        return
    raise UnsupportedMediaType(f"send the body as Content-Type: application/json, not {given[:80]}")


async def read_body(request: Request, limit: int, setting: str = "limits.request_bytes in flowctl.yaml") -> bytes:
    """The body, refusing (413) anything over ``limit`` bytes before and while reading it; the
    message names ``setting``, the one to raise, since a client cannot tell which limit it hit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest(f"Content-Length must be a number, not {declared[:40]!r}") from None
        if size > limit:
            raise PayloadTooLarge(
                f"the body is {size} bytes, more than the limit of {limit}; send less or raise {setting}"
            )
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the body is more than the limit of {limit} bytes; send less or raise {setting}")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def json_object(request: Request, limit: int) -> dict[str, Any]:
    check_content_type(request)
    body = parse_json(await read_body(request, limit))
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {json_type(body)}")
    return body


def members(body: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> list[str]:
    allowed = required + optional
    problems = [f"'{name}' is required" for name in required if name not in body]
    problems += [f"unknown member '{name}' (allowed: {', '.join(allowed)})" for name in body if name not in allowed]
    return problems


def string(body: Mapping[str, Any], name: str, problems: list[str], *, required: bool = False) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        problems.append(f"'{name}' must be a string, not {json_type(value)}")
        return ""
    if required and not value.strip():
        problems.append(f"'{name}' must not be empty")
    return value


def object_member(body: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = body.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"'{name}' must be an object, not {json_type(value)}")
        return {}
    return value


def record_path(request: Request, bundle: m.Bundle) -> tuple[str, str]:
    """The object type and record id the path names: 404 for an unknown object type, 400 for an
    id too long or holding NUL."""
    object, record_id = request.path_params["object"], request.path_params.get("id", "")
    if object not in bundle.objects:
        known = ", ".join(sorted(bundle.objects)) or "none are defined"
        raise NotFound(f"unknown object type '{object}' (known: {known})")
    if len(record_id) > MAX_ID:
        raise BadRequest(f"a record id is at most {MAX_ID} characters")
    if "\x00" in record_id:
        raise BadRequest(f"the record id: {NUL_PROBLEM}")
    return object, record_id
