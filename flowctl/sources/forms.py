"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data`` read as JSON data.

CRMs written in PHP post forms, not JSON: Bitrix24's event handlers send
``event=ONCRMDEALUPDATE&data[FIELDS][ID]=123&auth[application_token]=…``. :func:`parse_form`
reads such a body the way PHP's ``parse_str`` does, so the map sees the same nested object the
sender's documentation shows:

* ``a[b][c]=1`` nests: ``{"a": {"b": {"c": "1"}}}``;
* ``a[]=1&a[]=2`` appends: ``{"a": ["1", "2"]}``;
* numeric keys ``a[0]=x&a[1]=y`` give a list when they are dense from 0 (in order), a mapping
  with text keys otherwise (``a[3]=x`` gives ``{"a": {"3": "x"}}``);
* a key repeated with a plain value keeps the last one (as PHP does); a key used both as a value
  and as an object is refused.

Every value is text (forms carry no types; the map's field coercion turns ``"1500"`` into a number
where the field is one). :func:`parse_payload` chooses JSON or form by the Content-Type. Whatever
is wrong with a body is a :class:`BadRequest` (400) naming it.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from flowctl.sources.errors import BadRequest, UnsupportedMediaType
from flowctl.sources.payloads import MAX_DEPTH, parse_json

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
FORM_TYPES = (URLENCODED, MULTIPART)
MAX_FIELDS = 10_000  # pairs of one form body (the body's byte limit applies as well)
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")
_TEXT_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")

Node = dict[str | int, Any]


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value, lower-case, without parameters."""
    return (content_type or "").partition(";")[0].strip().lower()


def is_form(content_type: str | None) -> bool:
    return media_type(content_type) in FORM_TYPES


def parse_payload(body: bytes, content_type: str | None) -> Any:
    """A delivery's data: a form body (by its Content-Type) as nested objects, anything else as JSON."""
    media = media_type(content_type)
    if media == URLENCODED:
        return parse_urlencoded(body, content_type or "")
    if media == MULTIPART:
        return parse_multipart(body, content_type or "")
    return parse_json(body)


def parse_form(body: bytes, content_type: str) -> dict[str, Any]:
    """A urlencoded or multipart body as nested JSON data (see the module's docstring)."""
    if media_type(content_type) == MULTIPART:
        return parse_multipart(body, content_type)
    return parse_urlencoded(body, content_type)


def _charset(content_type: str) -> None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _TEXT_CHARSETS:
            raise UnsupportedMediaType(f"send the form as UTF-8, not charset {value.strip()[:40]}")


def parse_urlencoded(body: bytes, content_type: str = URLENCODED) -> dict[str, Any]:
    """``a=1&b[c]=2`` as ``{"a": "1", "b": {"c": "2"}}``; raises :class:`BadRequest`."""
    _charset(content_type)
    if not body.strip():
        raise BadRequest("the request body is empty; send the form's fields")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8 text (after percent-decoding)") from None
    except ValueError:  # more fields than max_num_fields
        raise BadRequest(f"the form has more than {MAX_FIELDS} fields") from None
    return nest(pairs)


def parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """The text fields of a ``multipart/form-data`` body, nested like a urlencoded one; a file
    part must hold UTF-8 text too (a webhook source stores data, not uploads)."""
    if "boundary=" not in content_type.lower():
        raise BadRequest("a multipart/form-data body needs a boundary= parameter in its Content-Type")
    if not body.strip():
        raise BadRequest("the request body is empty; send the form's fields")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    parts = message.get_payload() if message.is_multipart() else None
    if not isinstance(parts, list) or not parts or message.defects:
        raise BadRequest("the multipart/form-data body is malformed: no parts within its boundary")
    if len(parts) > MAX_FIELDS:
        raise BadRequest(f"the form has more than {MAX_FIELDS} fields")
    return nest([_part(part, index) for index, part in enumerate(parts)])


def _part(part: Message, index: int) -> tuple[str, str]:
    name = part.get_param("name", header="content-disposition")
    if part.get_content_disposition() != "form-data" or not isinstance(name, str) or not name:
        raise BadRequest(f'part {index} of the multipart body has no Content-Disposition: form-data; name="…"')
    if part.is_multipart():
        raise BadRequest(f"part '{name}' of the multipart body is itself multipart; send text fields")
    _charset(part.get("content-type", ""))
    data = part.get_payload(decode=True)
    try:
        return name, data.decode("utf-8") if isinstance(data, bytes) else ""
    except UnicodeDecodeError:
        raise BadRequest(f"part '{name}' of the multipart body is not UTF-8 text") from None


# ------------------------------------------------------------------------------- PHP keys


def split_key(key: str) -> list[str]:
    """``data[FIELDS][ID]`` as ``["data", "FIELDS", "ID"]`` (``[]`` gives ''); raises BadRequest."""
    bracket = key.find("[")
    if bracket == 0 or not key:
        raise BadRequest(f"the form key {key[:80]!r} has no name before its brackets")
    if bracket < 0:
        if "]" in key:
            raise BadRequest(f"the form key {key[:80]!r} has unbalanced brackets; write name[a][b]")
        return [key]
    segments = [key[:bracket]]
    rest = key[bracket:]
    position = 0
    for match in _SEGMENT.finditer(rest):
        if match.start() != position:
            break
        segments.append(match.group(1))
        position = match.end()
    if position != len(rest):
        raise BadRequest(f"the form key {key[:80]!r} has unbalanced brackets; write name[a][b]")
    if "]" in segments[0]:
        raise BadRequest(f"the form key {key[:80]!r} has unbalanced brackets; write name[a][b]")
    if len(segments) > MAX_DEPTH:
        raise BadRequest(f"the form key {key[:80]!r} is nested deeper than {MAX_DEPTH} levels")
    return segments


def _index(node: Node, segment: str) -> str | int:
    if segment == "":
        return max((k for k in node if isinstance(k, int)), default=-1) + 1
    return int(segment) if _INDEX.fullmatch(segment) else segment


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs with PHP-style keys as nested JSON data (see the module's docstring)."""
    root: Node = {}
    for key, value in pairs:
        if "\x00" in key:
            raise BadRequest("a form key must not contain NUL characters")
        segments = split_key(key)
        node = root
        walked: list[str] = []
        for segment in segments[:-1]:
            index = _index(node, segment) if walked else segment
            walked.append(str(index))
            child = node.setdefault(index, {})
            if not isinstance(child, dict):
                raise BadRequest(f"the form key '{_name(walked)}' is given both a value and nested keys")
            node = child
        last = _index(node, segments[-1]) if walked else segments[-1]
        if isinstance(node.get(last), dict):
            raise BadRequest(f"the form key '{_name([*walked, str(last)])}' is given both a value and nested keys")
        node[last] = value
    return {str(k): _settle(v) for k, v in root.items()}


def _name(walked: list[str]) -> str:
    return walked[0] + "".join(f"[{part}]" for part in walked[1:])


def _settle(value: Any) -> Any:
    """A nested node as JSON data: dense integer keys from 0 (in order) become a list."""
    if not isinstance(value, dict):
        return value
    keys = list(value)
    if keys and keys == list(range(len(keys))):
        return [_settle(v) for v in value.values()]
    return {str(k): _settle(v) for k, v in value.items()}
