"""The reference pages of the language (``docs/reference/<kind>.md``), generated from the schemas.

Every key of every kind, with its type, whether it is required, its default, its description and
an example, comes from ``schemas/*.schema.json`` (the source of truth): the pages cannot drift
from what ``validate`` accepts. A test regenerates them and fails when the committed ones differ.

    python -m flowctl.spec.reference docs/reference     # write the pages
    python -m flowctl.spec.reference --check docs/reference

Objects are shown one table per place (``spec``, ``spec.stages[]``, ``spec.nodes.<id>``); a
definition used in several places is shown once and referred to after; variants chosen by a
``type`` (nodes, actions, channels) get a table each. Kinds' top-level ``examples`` are whole
documents, shown as YAML.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

import yaml

from flowctl.spec.loader import resolve_plain
from flowctl.spec.model import KINDS
from flowctl.spec.schema import SCHEMA_FILES, load_schema, schema_names

COMMAND = "python -m flowctl.spec.reference docs/reference"
INDEX = "README.md"


@dataclass
class _Page:
    """One kind's page being written."""

    lines: list[str] = field(default_factory=list)
    shown: dict[str, str] = field(default_factory=dict)  # resolved $ref -> the place it is shown at
    pending: list[tuple[str, dict[str, Any], str, str]] = field(default_factory=list)  # place, schema, base, ref


def _by_id() -> dict[str, str]:
    return {str(load_schema(name).get("$id", name)): name for name in schema_names()}


def _resolve(schema: dict[str, Any], base: str) -> tuple[dict[str, Any], str, str]:
    """Follow ``$ref`` chains: the schema, its base URI and the absolute ref ('' when none)."""
    ref_seen = ""
    while "$ref" in schema:
        url, fragment = urldefrag(urljoin(base, schema["$ref"]))
        target = load_schema(_by_id().get(url, url.rsplit("/", 1)[-1]))
        for part in [p for p in fragment.split("/") if p]:
            target = target[part]
        merged = {k: v for k, v in schema.items() if k != "$ref"}
        ref_seen = ref_seen or f"{url}#{fragment}"
        schema, base = (
            {
                **target,
                **{
                    k: v
                    for k, v in merged.items()
                    if k in ("description", "markdownDescription", "examples", "default")
                },
            },
            url,
        )
    return schema, base, ref_seen


def _text(schema: dict[str, Any]) -> str:
    text = str(schema.get("markdownDescription") or schema.get("description") or "")
    return " ".join(line.strip() for line in text.replace("|", "\\|").splitlines() if line.strip())


def _inline(value: Any) -> str:
    return "`" + json.dumps(value, ensure_ascii=False).replace("|", "\\|") + "`"


def _type(schema: dict[str, Any], base: str) -> str:
    schema, base, _ = _resolve(schema, base)
    if "const" in schema:
        return _inline(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_inline(v) for v in schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(dict.fromkeys(_type(alt, base) for alt in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        items = schema.get("items")
        return f"list of {_type(items, base)}" if isinstance(items, dict) else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict) and not schema.get("properties"):
        return f"map of name → {_type(schema['additionalProperties'], base)}"
    return str(kind or "any")


def _nested(schema: dict[str, Any], base: str) -> Iterator[tuple[str, dict[str, Any], str, str]]:
    """(suffix, schema, base, ref) of each object worth a table of its own under ``schema``."""
    schema, base, ref = _resolve(schema, base)
    if _has_table(schema):
        yield "", schema, base, ref
        return
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        for suffix, inner, inner_base, inner_ref in _nested(schema["items"], base):
            yield "[]" + suffix, inner, inner_base, inner_ref
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for suffix, inner, inner_base, inner_ref in _nested(extra, base):
            yield ".<name>" + suffix, inner, inner_base, inner_ref
    for key in ("oneOf", "anyOf"):
        for alt in schema.get(key, []):
            yield from _nested(alt, base)


def _has_table(schema: dict[str, Any]) -> bool:
    return bool(schema.get("properties")) or any("then" in part for part in schema.get("allOf", []))


def _variants(schema: dict[str, Any], base: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``allOf: [{if: {properties: {type: {const: X}}}, then: …}]``: (X, then-schema, base)."""
    for part in schema.get("allOf", []):
        condition = part.get("if", {}).get("properties", {})
        if "then" not in part or len(condition) != 1:
            continue
        ((key, test),) = condition.items()
        if "const" in test:
            then, then_base, _ = _resolve(part["then"], base)
            yield f"{key}: {test['const']}", then, then_base


def _table(page: _Page, place: str, schema: dict[str, Any], base: str, heading: int) -> None:
    page.lines += [f"{'#' * heading} `{place}`" if place else f"{'#' * heading} The document", ""]
    if place and (text := _text(schema)):
        page.lines += [text, ""]
    rows = _rows(page, place, schema, base)
    if rows:
        page.lines += ["| key | type | required | default | description |", "|---|---|---|---|---|", *rows, ""]
    for variant, then, then_base in _variants(schema, base):
        page.lines += [f"{'#' * (heading + 1)} `{place or 'the document'}` with `{variant}`", ""]
        if text := _text(then):
            page.lines += [text, ""]
        own = {k: v for k, v in then.get("properties", {}).items() if k not in schema.get("properties", {})}
        if own:
            page.lines += [
                "| key | type | required | default | description |",
                "|---|---|---|---|---|",
                *_rows(page, place, {**then, "properties": own}, then_base),
                "",
            ]
        elif not then.get("properties"):
            page.lines += ["No other keys.", ""]


def _rows(page: _Page, place: str, schema: dict[str, Any], base: str) -> list[str]:
    required = set(schema.get("required", []))
    rows = []
    for key, prop in schema.get("properties", {}).items():
        resolved, _, _ = _resolve(prop, base)
        text = _text(prop) or _text(resolved)
        examples = prop.get("examples") or resolved.get("examples")
        if examples:
            ended = text if not text or text.endswith((".", ")", ":")) else text + "."
            text = f"{ended} Example: {_inline(examples[0])}."
        default = prop.get("default", resolved.get("default"))
        shown = "" if default is None else _inline(default)
        rows.append(f"| `{key}` | {_type(prop, base)} | {'yes' if key in required else ''} | {shown} | {text} |")
        for suffix, inner, inner_base, ref in _nested(prop, base):
            page.pending.append((f"{place}.{key}{suffix}" if place else f"{key}{suffix}", inner, inner_base, ref))
    return rows


class _Dumper(yaml.SafeDumper):
    """Quotes every string that flowctl (YAML 1.2) would not read back as the same string."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    quoted = not isinstance(resolve_plain(value), str)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quoted else None)


_Dumper.add_representer(str, _represent_str)


def dump(value: Any) -> str:
    """YAML as a person would write it, which flowctl reads back as ``value``."""
    text = yaml.dump(value, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=110, default_flow_style=None)
    return str(text)


def render(kind: str) -> str:
    """The reference page of ``kind`` (markdown)."""
    name = SCHEMA_FILES[kind]
    schema = load_schema(name)
    base = str(schema.get("$id", name))
    page = _Page()
    page.lines += [f"# {kind}", "", f"<!-- generated from schemas/{name} by `{COMMAND}`: do not edit -->", ""]
    if text := _text(schema):
        page.lines += [text, ""]
    for example in schema.get("examples", []):
        page.lines += ["```yaml", dump(example).rstrip("\n"), "```", ""]
    _table(page, "", schema, base, 2)
    while page.pending:
        place, inner, inner_base, ref = page.pending.pop(0)
        if ref and ref in page.shown:
            page.lines += [f"`{place}`: as `{page.shown[ref]}` above.", ""]
            continue
        if ref:
            page.shown[ref] = place
        _table(page, place, inner, inner_base, 2)
    return "\n".join(page.lines).rstrip("\n") + "\n"


def index() -> str:
    lines = [
        "# Reference",
        "",
        f"<!-- generated by `{COMMAND}`: do not edit -->",
        "",
        "Every key of every kind, generated from the JSON Schemas in `schemas/` (what `flowctl validate` "
        "checks against). Errors and their codes: [docs/errors.md](../errors.md).",
        "",
        "| kind | what it is |",
        "|---|---|",
    ]
    for kind in KINDS:
        lines.append(f"| [{kind}]({kind.lower()}.md) | {_text(load_schema(SCHEMA_FILES[kind]))} |")
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> text of every page."""
    return {INDEX: index(), **{f"{kind.lower()}.md": render(kind) for kind in KINDS}}


def stale(folder: Path) -> list[str]:
    """The pages of ``folder`` that differ from the generated ones (or are missing or extra)."""
    expected = pages()
    found = {p.name for p in folder.glob("*.md")} if folder.is_dir() else set()
    out = sorted(
        n
        for n, text in expected.items()
        if not (folder / n).is_file() or (folder / n).read_text(encoding="utf-8") != text
    )
    return out + sorted(found - set(expected))


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        (folder / name).write_text(text, encoding="utf-8")
    for extra in {p.name for p in folder.glob("*.md")} - set(pages()):
        (folder / extra).unlink()


def main(argv: list[str]) -> int:
    check = "--check" in argv
    folders = [a for a in argv if a != "--check"]
    if len(folders) != 1 or folders[0].startswith("-"):
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    folder = Path(folders[0])
    if check:
        differ = stale(folder)
        for name in differ:
            print(f"{folder / name} is stale: run {COMMAND}", file=sys.stderr)
        return 1 if differ else 0
    write(folder)
    return 0


if __name__ == "__main__":  # pragma: no cover - the command line
    sys.exit(main(sys.argv[1:]))
