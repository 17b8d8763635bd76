"""Load a configuration directory: YAML → schema → typed model → semantic checks.

``load_bundle`` is what every command calls (validate, test, dry-run, run, plan): one path from
text to a ``Bundle`` and every issue found on the way. Root causes come first: the errors of
reading, the schema and building, then the errors of the semantic checks, then warnings, each
group by place. Findings that only follow from a document that failed (a test naming the stages
of a pipeline with a typo) are held back in ``Loaded.held`` (see ``spec/dependencies.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowctl.spec import model as m
from flowctl.spec.builder import Builder
from flowctl.spec.checks import run_checks
from flowctl.spec.dependencies import document_keys, guess_keys, hold_back
from flowctl.spec.issues import Issue, error, sort_key
from flowctl.spec.loader import LoadResult, load_directory, load_text
from flowctl.spec.places import Where
from flowctl.spec.schema import check_document

_GROUPS = {
    "ObjectType": "objects",
    "Pipeline": "pipelines",
    "Flow": "flows",
    "CareProcess": "care",
    "Template": "templates",
    "Channel": "channels",
    "Source": "sources",
    "AllocationRule": "rules",
    "Test": "tests",
}


@dataclass(slots=True)
class Loaded:
    """The outcome of loading a directory. ``bundle`` is None only when nothing could be read."""

    root: Path
    bundle: m.Bundle | None
    issues: list[Issue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    documents: int = 0
    #: Findings not shown because a document they depend on is invalid (each says which).
    held: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def assemble(root: Path, raw: LoadResult, *, semantic: bool = True, texts: Mapping[str, str] | None = None) -> Loaded:
    """Schema-check and build every document, then run the semantic checks on the whole.

    ``texts`` (path under ``root`` -> text) are files the builder reads instead of the disk.
    """
    issues = list(raw.issues)
    broken: dict[str, Issue] = {}  # key of a document that could not be built -> its first error
    for issue, text in raw.unread:
        for key in sorted(guess_keys(text)):
            broken.setdefault(key, issue)
    builder = Builder(root=root, _files={root / name: text for name, text in (texts or {}).items()})
    groups: dict[str, dict[str, m.Document]] = {g: {} for g in _GROUPS.values()}
    config: m.Config | None = None
    for doc in raw.documents:
        problems = check_document(doc)
        issues.extend(problems)
        if problems:
            first = min(problems, key=sort_key)
            for key in sorted(document_keys(doc.data)):
                broken.setdefault(key, first)
            continue
        built = builder.build(doc)
        if built is None:
            continue
        if isinstance(built, m.Config):
            if config is not None:
                issues.append(
                    error(
                        "E020",
                        f"a second Config document '{built.name}' (the first is in {config.where.file})",
                        built.where.at(),
                        "keep one Config per directory",
                    )
                )
                continue
            config = built
            continue
        group = groups[_GROUPS[built.kind]]
        other = group.get(built.name)
        if other is not None:
            issues.append(
                error(
                    "E020",
                    f"duplicate {built.kind} name '{built.name}' (also at {other.where.at()})",
                    Where(built.where.file, ("metadata", "name"), built.where.marks).at(),
                    "names must be unique per kind; rename one of them",
                )
            )
            continue
        group[built.name] = built
    issues.extend(builder.issues)
    if config is None:
        config = m.Config(metadata=m.Metadata(name="default"), where=Where(str(root)))
    # Each group holds only documents of its kind (``_GROUPS``), which the type of ``groups`` cannot say.
    frozen: dict[str, Any] = {name: _freeze(docs) for name, docs in groups.items()}
    bundle = m.Bundle(root=str(root), config=config, **frozen)
    found: list[Issue] = []
    if semantic:
        found.extend(run_checks(bundle))
    checked = {id(issue) for issue in found}  # a root is an early issue: only early ones are renamed
    shown, held = hold_back([*issues, *found], broken)
    early = [issue for issue in shown if id(issue) not in checked]
    ordered = _root_causes_first(early, [issue for issue in shown if id(issue) in checked])
    return Loaded(
        root=root,
        bundle=bundle,
        issues=ordered,
        files=raw.files,
        documents=len(raw.documents),
        held=sorted(held, key=sort_key),
    )


def _root_causes_first(early: list[Issue], found: list[Issue]) -> list[Issue]:
    """Errors of reading and building, then errors of the checks, then every warning; each by place.

    CI shows only the first few annotations of a step, so the error that explains the others leads.
    """
    errors_first = sorted((i for i in early if i.severity == "error"), key=sort_key)
    errors_next = sorted((i for i in found if i.severity == "error"), key=sort_key)
    warnings = sorted((i for i in (*early, *found) if i.severity != "error"), key=sort_key)
    return [*errors_first, *errors_next, *warnings]


def _freeze(docs: dict[str, m.Document]) -> Mapping[str, m.Document]:
    return m.frozen_map(docs)


def load_bundle(root: Path | str, *, semantic: bool = True, tick: Callable[[], None] | None = None) -> Loaded:
    """Load and check the configuration under ``root`` (a directory or one file); ``tick`` is
    called after each file read."""
    root = Path(root)
    raw = load_directory(root, tick)
    base = root.parent if root.is_file() else root
    return assemble(base, raw, semantic=semantic)


def load_bundle_from_files(
    files: Mapping[str, str], *, root: Path | str = "<stored-version>", semantic: bool = True
) -> Loaded:
    """Load a configuration from file texts (``"flows/a.yaml" -> text``) as ``load_bundle`` would
    load the same files from a directory: a stored version, rebuilt without its checkout.

    YAML files are read in the directory walk's order; template files (``html_file``…) are
    looked up in ``files`` only, never on disk.
    """
    root = Path(root)
    raw = LoadResult()
    names = [name for name in files if name.endswith((".yaml", ".yml"))]
    for name in sorted(names, key=lambda n: tuple(n.split("/"))):  # the walk: siblings by name
        raw.extend(load_text(files[name], name, root / name))
    return assemble(root, raw, semantic=semantic, texts=files)
