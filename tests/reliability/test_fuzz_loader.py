"""hypothesis over the loader and the validator: whatever text a user commits, ``flowctl validate``
answers with diagnostics (a code and a file:line:column), never with a traceback.

Three kinds of input: arbitrary text; YAML documents of flowctl's shape whose keys and values are
drawn from the vocabulary of the valid corpus (so they reach the schema and semantic checks, not
just the YAML parser); and the valid corpus (tests/broken/000-valid, examples/) mutated a little:
a value replaced, a key renamed or dropped, a line cut, a Jinja fragment inserted into a template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowctl.spec import model
from flowctl.spec.config import Loaded, load_bundle_from_files

REPO = Path(__file__).resolve().parents[2]
CORPUS = [REPO / "tests" / "broken" / "000-valid", *sorted(p for p in (REPO / "examples").iterdir() if p.is_dir())]
KINDS = list(model.KINDS)
CODE = re.compile(r"^[EW][0-9]{3}$")
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
_examples: dict[str, int] = {}


@cache
def corpus() -> list[dict[str, str]]:
    """Each valid configuration as file texts (what ``load_bundle_from_files`` takes)."""
    out = []
    for root in CORPUS:
        files = {
            p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("README.md", "expect.txt")
        }
        out.append(files)
    return out


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield "key", key
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield "scalar", value


@cache
def vocabulary() -> tuple[list[str], list[Any]]:
    """Every mapping key and scalar of the valid corpus: fuzz that speaks the language."""
    keys: set[str] = set()
    scalars: set[Any] = set()
    for files in corpus():
        for name, text in files.items():
            if name.endswith(".yaml"):
                for doc in yaml.safe_load_all(text):
                    for kind, value in _walk(doc):
                        (keys if kind == "key" else scalars).add(value)
    return sorted(map(str, keys)), sorted(scalars, key=repr)


def check(files: Mapping[str, str], kind: str) -> Loaded:
    """Load ``files``; every problem must be a diagnostic with a code and a position in a file."""
    _examples[kind] = _examples.get(kind, 0) + 1
    loaded = load_bundle_from_files(files)  # raises nothing, whatever the input
    for issue in loaded.issues:
        assert CODE.match(issue.code), issue
        assert issue.file in files, issue  # a position in a file the user wrote
        assert issue.line >= 1 and issue.col >= 1, issue
        assert str(issue).startswith(f"{issue.file}:{issue.line}:{issue.col}: "), issue
        assert issue.message.strip(), issue
    if loaded.ok:
        assert loaded.bundle is not None
    return loaded


# --- strategies ----------------------------------------------------------------------------------

JINJA = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "{{ record.",
    "{% for x in record %}",
    "{% endfor %}",
    "{% if %}",
    "{{ record.x | nope }}",
    "{{ ''.__class__ }}",
    "{% raw %}",
    "|",
    "${",
    "${X}",
    "\x00",
    "'",
    '"',
]
yaml_ish_text = st.one_of(
    st.text(max_size=400),
    st.lists(
        st.sampled_from(
            [
                "---",
                "apiVersion: flowctl/v1",
                "kind: Flow",
                "metadata:",
                "  name: x",
                "spec:",
                "  object: deal",
                "- ",
                "  - id: new",
                ": ",
                "&a",
                "*a",
                "!!python/object",
                "? ",
                "\t",
                "  ",
                "{",
                "[",
                "'",
                '"',
                "#",
                "%YAML 1.1",
                "<<: *a",
                *JINJA,
            ]
        ),
        max_size=30,
    ).map("\n".join),
)


@st.composite
def values(draw: st.DrawFn, depth: int = 3) -> Any:
    keys, scalars = vocabulary()
    scalar = st.one_of(
        st.sampled_from(scalars),
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=30),
        st.sampled_from(JINJA),
    )
    if depth <= 0:
        return draw(scalar)
    key = st.one_of(st.sampled_from(keys), st.text(max_size=10))
    return draw(
        st.one_of(
            scalar,
            st.lists(values(depth - 1), max_size=4),
            st.dictionaries(key, values(depth - 1), max_size=5),
        )
    )


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": draw(st.sampled_from(["flowctl/v1"] * 8 + ["flowctl/v2", 1])),
        "kind": draw(st.sampled_from([*KINDS, "Nope"])),
        "metadata": {"name": draw(st.one_of(st.sampled_from(["a", "deal", "contact", "email"]), values(0)))},
        "spec": draw(values()),
    }
    for key in draw(st.sets(st.sampled_from(["apiVersion", "kind", "metadata", "spec"]), max_size=1)):
        del doc[key]
    return doc


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy: Any = dict(value) if isinstance(value, Mapping) else list(value)
    copy[head] = _replace(value[head], tuple(rest), new)
    return copy


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, str]:
    """One valid configuration with one or two small changes."""
    files = dict(draw(st.sampled_from(corpus())))
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(sorted(files)))
        text = files[name]
        how = draw(
            st.sampled_from(
                ["tree", "tree", "tree", "line", "insert"] if name.endswith(".yaml") else ["insert", "line"]
            )
        )
        try:
            docs = list(yaml.safe_load_all(text)) if how == "tree" else []
        except yaml.YAMLError:  # an earlier change broke the YAML: change the text instead
            how = "insert"
        if how == "tree" and docs:
            index = draw(st.integers(0, len(docs) - 1))
            path = draw(st.sampled_from(list(_paths(docs[index]))))
            keys, _ = vocabulary()
            change = draw(st.sampled_from(["swap", "swap", "value", "drop", "rename"])) if path else "value"
            if change == "swap":  # another scalar of the corpus, of the same type: often schema-valid
                _, scalars = vocabulary()
                old = _get(docs[index], path)
                alike = [v for v in scalars if type(v) is type(old)] or scalars
                docs[index] = _replace(docs[index], path, draw(st.sampled_from(alike)))
            elif change == "value":
                docs[index] = _replace(docs[index], path, draw(values(1)))
            else:
                container = _get(docs[index], path[:-1])
                holder: Any = dict(container) if isinstance(container, Mapping) else list(container)
                item = holder.pop(path[-1])
                if change == "rename" and isinstance(holder, dict):
                    holder[draw(st.sampled_from(keys))] = item
                docs[index] = _replace(docs[index], path[:-1], holder)
            text = yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False)
        elif how == "line":
            lines = text.splitlines()
            at = draw(st.integers(0, max(len(lines) - 1, 0)))
            action = draw(st.sampled_from(["cut", "repeat", "dedent", "truncate"]))
            if lines and action == "cut":
                del lines[at]
            elif lines and action == "repeat":
                lines.insert(at, lines[at])
            elif lines and action == "dedent":
                lines[at] = lines[at].lstrip()
            else:
                lines = lines[:at]
            text = "\n".join(lines) + "\n"
        else:
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.one_of(st.sampled_from(JINJA), st.text(max_size=5))) + text[at:]
        files[name] = text
    return files


# --- the properties --------------------------------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(text=yaml_ish_text)
def test_any_text_gives_diagnostics_not_a_crash(text: str) -> None:
    check({"flowctl.yaml": text}, "text")


@settings(FUZZ, max_examples=300)
@given(docs=st.lists(documents(), min_size=1, max_size=3))
def test_documents_of_any_shape_give_diagnostics_not_a_crash(docs: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False)
    check({"config.yaml": text}, "structures")


@settings(FUZZ, max_examples=100)
@given(files=mutated())
def test_a_mutated_valid_configuration_gives_diagnostics_not_a_crash(files: dict[str, str]) -> None:
    check(files, "mutations")


def test_the_corpus_is_valid() -> None:
    for files in corpus():
        loaded = check(files, "corpus")
        assert loaded.ok, [str(i) for i in loaded.errors]


def test_figures(figures: Any) -> None:
    figures(
        hypothesis_examples=sum(v for k, v in _examples.items() if k != "corpus"),
        **{k: v for k, v in _examples.items() if k != "corpus"},
    )
    assert _examples or pytest.skip("run with the properties above")
