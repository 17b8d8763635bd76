"""Docs that cannot drift (issue 13, item 13).

1. ``docs/reference/`` is generated from the schemas; the committed pages must be what the
   generator writes now.
2. Every ```yaml block of README.md and docs/**/*.md is checked, by its fence's info string:

   - ```` ```yaml ````: flowctl YAML. Each document (a mapping with a top-level ``kind``) is
     checked against its kind's JSON Schema, as ``validate`` does. Docs may abbreviate: a missing
     ``apiVersion`` is taken as ``flowctl/v1`` and a missing ``metadata`` as ``{name: example}``;
     nothing else is filled in. A block that is not documents must be marked as one of:
   - ```` ```yaml fragment=Kind:path ````: a part of a document, checked against that place of
     Kind's schema, except that the keys required there may be left out (only there: deeper
     down, what is written must be complete). ``path`` is the keys from the document's root,
     ``*`` for any name of a map and ``[]`` for an item of a list, empty for the root:
     ``fragment=Flow:spec.nodes`` is some nodes, ``fragment=Flow:spec`` some keys of a Flow's
     spec, ``fragment=Pipeline:spec.stages[]`` one stage;
   - ```` ```yaml invalid ````: a mistake shown on purpose (docs/errors.md); not checked;
   - ```` ```yaml other ````: not flowctl (a CI workflow, a pre-commit config); not checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from jsonschema import Draft202012Validator

from flowctl.spec import reference
from flowctl.spec.loader import load_text
from flowctl.spec.model import API_VERSION, KINDS
from flowctl.spec.schema import SCHEMA_FILES, _registry, check_document, load_schema

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```ya?ml([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
MARKS = ("", "invalid", "other")


def test_the_reference_pages_are_generated_from_the_schemas(tmp_path: Path) -> None:
    committed = ROOT / "docs" / "reference"
    reference.write(tmp_path)
    stale = [
        p.name
        for p in sorted(tmp_path.glob("*.md"))
        if not (committed / p.name).is_file()
        or (committed / p.name).read_text(encoding="utf-8") != p.read_text(encoding="utf-8")
    ]
    extra = sorted({p.name for p in committed.glob("*.md")} - {p.name for p in tmp_path.glob("*.md")})
    assert not stale and not extra, f"docs/reference is stale ({', '.join(stale + extra)}): run {reference.COMMAND}"
    assert reference.stale(committed) == []


def test_every_kind_has_a_page_with_every_key_of_its_spec() -> None:
    pages = reference.pages()
    for kind in KINDS:
        page = pages[f"{kind.lower()}.md"]
        spec = load_schema(SCHEMA_FILES[kind])["properties"]["spec"]
        for key in spec.get("properties", {}):
            assert f"| `{key}` |" in page, f"{kind}: spec.{key} missing from its page"


def _blocks() -> list[tuple[str, str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match[1].strip(), match[2]))
    return found


BLOCKS = _blocks()


def _place(kind: str, path: str) -> str:
    """The absolute URI of the place ``path`` of ``kind``'s schema (following $refs on the way)."""
    schema = load_schema(SCHEMA_FILES[kind])
    base = str(schema["$id"])
    uri, node = f"{base}#", schema
    for step in [s for s in re.split(r"\.|(?=\[\])", path) if s]:
        while "$ref" in node:
            target, node, base = (
                reference._resolve(node, base)[2],
                reference._resolve(node, base)[0],
                reference._resolve(node, base)[1],
            )
            uri = target
        pointer = {"*": "/additionalProperties", "[]": "/items"}.get(step, f"/properties/{step}")
        node = (
            node["additionalProperties"] if step == "*" else node["items"] if step == "[]" else node["properties"][step]
        )
        uri += pointer
    return urljoin(base, uri)


def _problems(where: str, mark: str, body: str) -> list[str]:
    if mark in ("invalid", "other"):
        return []
    loaded = load_text(body, where)
    problems = [str(issue) for issue in loaded.issues]
    if mark.startswith("fragment="):
        kind, _, path = mark.removeprefix("fragment=").partition(":")
        validator = Draft202012Validator({"$ref": _place(kind, path)}, registry=_registry())
        for doc in loaded.documents:
            problems += [
                f"{where}: {'/'.join(map(str, e.absolute_path)) or kind + ':' + path}: {e.message}"
                for e in validator.iter_errors(doc.data)
                if not (e.validator == "required" and not e.absolute_path)
            ]
        return problems
    assert mark == "", f"{where}: unknown mark {mark!r} (use fragment=Kind:path, invalid or other)"
    for doc in loaded.documents:
        data: Any = doc.data
        if not isinstance(data, dict) or "kind" not in data:
            problems.append(
                f"{where}: not a flowctl document (no kind:); mark the fence fragment=Kind:path, invalid or other"
            )
            continue
        data.setdefault("apiVersion", API_VERSION)
        data.setdefault("metadata", {"name": "example"})
        problems += [str(issue) for issue in check_document(doc)]
    return problems


@pytest.mark.parametrize(("where", "mark", "body"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_every_yaml_snippet_of_the_docs_is_valid(where: str, mark: str, body: str) -> None:
    problems = _problems(where, mark, body)
    assert not problems, "\n".join(problems)


def test_the_rule_catches_a_sending_policy_under_policy() -> None:
    body = "kind: Channel\nmetadata: {name: sms}\nspec:\n  type: http\n  url: x\n  policy: {rate: 20/s}\n"
    (problem,) = _problems("ops.md:1", "", body)
    assert "E010" in problem and "'policy' was unexpected" in problem
    assert _problems("x.md:1", "fragment=Flow:spec.nodes", "a: {type: delay, for: 1d}\n") == []
    assert _problems("x.md:1", "fragment=Flow:spec.nodes", "a: {type: delay, fro: 1d}\n")
    assert _problems("x.md:1", "fragment=Flow:spec", "trigger: {on: created}\n") == []  # object, nodes… left out
    assert _problems("x.md:1", "fragment=Flow:spec", "trigger: {on: create}\n")
    assert _problems("x.md:1", "", "trigger: {on: created}\n")  # neither a document nor marked


_NAMED = re.compile(r"`((?:tests|flowctl|bench)/[\w/]+\.py)(?:::(\w+)(…)?)?")


def test_every_test_and_module_the_docs_name_exists() -> None:
    """RELIABILITY.md and the docs cite tests and modules by path: a move or rename must update them."""
    missing = []
    for doc in [ROOT / "RELIABILITY.md", *DOCS]:
        for found in _NAMED.finditer(doc.read_text(encoding="utf-8")):
            path, name, shortened = ROOT / found.group(1), found.group(2), found.group(3)
            if not path.exists():
                missing.append(f"{doc.name}: {found.group(1)} does not exist")
            elif name:
                pattern = rf"def {name}" if shortened else rf"def {name}\b"  # `name…` shortens a longer name
                if not re.search(pattern, path.read_text(encoding="utf-8")):
                    missing.append(f"{doc.name}: {found.group(1)} has no {name}")
    assert not missing, "\n".join(missing)
