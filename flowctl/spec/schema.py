"""The JSON Schemas (Draft 2020-12) of every kind, and validation of raw documents against them.

The schemas in the top-level ``schemas/`` folder are the source of truth and ship inside the
package (``flowctl/schemas`` links to them). Validation picks the kind's own schema instead of
going through the dispatching one, so an error in a Flow is reported against the Flow's rules
and not as "does not match any of 10 kinds".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from flowctl.spec.issues import Issue, error
from flowctl.spec.loader import VALUE, RawDocument
from flowctl.spec.model import API_VERSION, KINDS
from flowctl.spec.places import Span

#: The file of each kind's schema, and of the dispatching one.
SCHEMA_FILES = {kind: f"{kind.lower()}.schema.json" for kind in KINDS}
DISPATCH_FILE = "flowctl.schema.json"
BUNDLE_FILE = "flowctl.bundle.schema.json"

_YAML11_WORDS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF"}


def schema_names() -> list[str]:
    folder = resources.files("flowctl") / "schemas"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".schema.json"))


@cache
def load_schema(file_name: str) -> dict[str, Any]:
    text = (resources.files("flowctl") / "schemas" / file_name).read_text(encoding="utf-8")
    return dict(json.loads(text))


@cache
def _registry() -> Registry:
    resources_ = []
    for name in schema_names():
        schema = load_schema(name)
        resource = Resource.from_contents(schema)
        resources_.append((schema.get("$id", name), resource))
        resources_.append((name, resource))
    return Registry().with_resources(resources_)


@cache
def validator_for(kind: str) -> Draft202012Validator:
    schema = load_schema(SCHEMA_FILES[kind])
    return Draft202012Validator(schema, registry=_registry())


def _span(doc: RawDocument, path: tuple[Any, ...], *, value: bool) -> Span:
    if value and (span := doc.marks.get((*path, VALUE))):
        return span
    for cut in range(len(path), -1, -1):
        span = doc.marks.get(tuple(path[:cut]))
        if span is not None:
            return span
    return doc.span


def _leaf_errors(err: ValidationError) -> Iterator[ValidationError]:
    """Descend into oneOf/anyOf so the user sees the most specific reason."""
    if err.context:
        # the alternative that got furthest is the one the author most likely meant
        best = max(err.context, key=lambda e: (len(e.absolute_path), -len(e.context or [])))
        deepest = [e for e in err.context if len(e.absolute_path) == len(best.absolute_path)]
        if len(best.absolute_path) > len(err.absolute_path):
            for sub in deepest[:1]:
                yield from _leaf_errors(sub)
            return
    yield err


def _schema_of(err: ValidationError) -> Mapping[str, Any]:
    """The subschema that failed (``true``/``false`` schemas have no keywords to read)."""
    return err.schema if isinstance(err.schema, Mapping) else {}


def _describe(err: ValidationError) -> tuple[str, str]:
    """A message and a hint for one schema error."""
    where = "/".join(str(p) for p in err.absolute_path) or "document"
    instance = err.instance
    schema = _schema_of(err)
    if err.validator == "additionalProperties" or err.validator == "unevaluatedProperties":
        allowed = sorted((schema.get("properties") or {}).keys())
        hint = f"allowed here: {', '.join(allowed)}" if allowed else "remove it"
        return f"{where}: {err.message}", hint
    if err.validator == "required":
        return f"{where}: {err.message}", "add the missing key"
    if err.validator == "type" and isinstance(instance, str) and instance in _YAML11_WORDS:
        return (
            f"{where}: '{instance}' is text, not a boolean",
            "flowctl reads YAML 1.2: write true or false (yes/no/on/off are plain words)",
        )
    if err.validator == "enum":
        options = ", ".join(str(v) for v in cast(Iterable[Any], err.validator_value))
        return f"{where}: {instance!r} is not one of: {options}", "pick one of the listed values"
    if err.validator in ("oneOf", "anyOf", "not") and "description" in schema:
        return f"{where}: does not fit: {schema['description']}", "see the schema description (flowctl schema)"
    if err.validator == "pattern" and "description" in schema:
        expected = schema.get("patternErrorMessage")  # the editor's wording (yaml-language-server shows it)
        return f"{where}: {instance!r} is not valid: {schema['description']}", f"write {expected}" if expected else ""
    return f"{where}: {err.message}", ""


#: A YAML file of another tool (docker-compose.yml, a CI workflow) in the config directory.
_IGNORE_IT = "if {file} is not part of the flowctl configuration, add the line '{file}' to .flowctlignore"


def check_document(doc: RawDocument) -> list[Issue]:
    """Check one raw document against the schema of its kind; every error, with its place."""
    data = doc.data
    if not isinstance(data, dict):
        return [
            error(
                "E010",
                "a flowctl document must be a mapping with apiVersion, kind, metadata and spec",
                doc.span,
                f"start the document with 'apiVersion: flowctl/v1', or {_IGNORE_IT.format(file=doc.span.file)}",
            )
        ]
    if "apiVersion" not in data and "kind" not in data:
        return [
            error(
                "E011",
                "not a flowctl document: it has neither apiVersion nor kind",
                doc.span,
                f"{_IGNORE_IT.format(file=doc.span.file)}; a flowctl document starts with "
                f"'apiVersion: {API_VERSION}' and a kind",
            )
        ]
    issues: list[Issue] = []
    if data.get("apiVersion") != API_VERSION:
        issues.append(
            error(
                "E012",
                f"apiVersion must be '{API_VERSION}', not {data.get('apiVersion')!r}",
                _span(doc, ("apiVersion",), value=True),
                f"write 'apiVersion: {API_VERSION}'",
            )
        )
    kind = data.get("kind")
    if kind not in KINDS:
        issues.append(
            error(
                "E011",
                f"unknown kind {kind!r}",
                _span(doc, ("kind",), value=True),
                f"kind is one of: {', '.join(KINDS)}",
            )
        )
        return issues
    validator = validator_for(kind)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    seen: set[tuple[str, Span]] = set()
    for top in errors:
        for err in _leaf_errors(top):
            if tuple(err.absolute_path) == ("apiVersion",) or (
                err.validator == "required" and "'apiVersion'" in err.message
            ):
                continue  # reported above with a better message
            message, hint = _describe(err)
            span = _span(doc, tuple(err.absolute_path), value=err.validator not in ("additionalProperties",))
            if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(err.instance, dict):
                extra = [k for k in err.instance if k not in (_schema_of(err).get("properties") or {})]
                if extra:
                    span = _span(doc, (*err.absolute_path, extra[0]), value=False)
            if (message, span) in seen:
                continue
            seen.add((message, span))
            issues.append(error("E010", message, span, hint))
    return issues
