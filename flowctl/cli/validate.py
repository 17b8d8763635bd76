"""``flowctl validate``: schema and semantic checks, in text, JSON, GitHub or SARIF form."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import click

from flowctl.channels.env import env_issues
from flowctl.cli.sarif import sarif_log
from flowctl.cli.terminal import Progress, paint
from flowctl.spec.config import load_bundle

FORMATS = ("text", "json", "github", "sarif")


def render_text(loaded: Any, out: IO[str]) -> None:
    """One line per issue, its severity red (error) or yellow (warning) on a colour terminal, then the verdict."""
    for issue in loaded.issues:
        label = f"{issue.severity}[{issue.code}]"
        shown = paint(label, "error") if issue.severity == "error" else paint(label, "warning")
        click.echo(str(issue).replace(label, shown, 1), file=out)
    errors, warnings = len(loaded.errors), len(loaded.warnings)
    verdict = paint("valid", "ok") if not errors else paint("invalid", "error")
    click.echo(
        f"{loaded.root}: {verdict}: {loaded.documents} documents in {len(loaded.files)} files, "
        f"{errors} errors, {warnings} warnings",
        file=out,
    )


def json_document(loaded: Any) -> dict[str, Any]:
    """The stable JSON form of one directory: ``{"valid", "documents", "files", "errors", "warnings", "issues"}``."""
    doc: dict[str, Any] = {
        "version": 1,
        "root": str(loaded.root),
        "valid": loaded.ok and not _is_empty(loaded),
        "documents": loaded.documents,
        "files": len(loaded.files),
        "errors": len(loaded.errors),
        "warnings": len(loaded.warnings),
        "issues": [issue.to_json() for issue in loaded.issues],
    }
    if _is_empty(loaded):
        doc.update(files=0, errors=1, error=nothing_found(loaded.root))
    return doc


def json_documents(loaded: Sequence[Any]) -> dict[str, Any]:
    """One document for any number of directories: one directory's form, or their sum with
    ``directories`` (each directory's own form) and every issue carrying its ``root``."""
    if len(loaded) == 1:
        return json_document(loaded[0])
    parts = [json_document(each) for each in loaded]
    return {
        "version": 1,
        "valid": all(part["valid"] for part in parts),
        **{key: sum(part[key] for part in parts) for key in ("documents", "files", "errors", "warnings")},
        "issues": [{**issue, "root": part["root"]} for part in parts for issue in part["issues"]],
        "directories": parts,
    }


def render_json(loaded: Any, out: IO[str]) -> None:
    _dump(json_document(loaded), out)


def _dump(doc: Mapping[str, Any], out: IO[str]) -> None:
    json.dump(doc, out, ensure_ascii=False, indent=2)
    out.write("\n")


def _escape_github(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_github_property(text: str) -> str:
    return _escape_github(text).replace(":", "%3A").replace(",", "%2C")


def render_github(loaded: Any, out: IO[str]) -> None:
    """GitHub Actions workflow commands: each issue becomes an annotation on its line."""
    for issue in loaded.issues:
        level = "error" if issue.severity == "error" else "warning"
        file = _escape_github_property(str(Path(loaded.root) / issue.file))
        message = issue.message + (f" (hint: {issue.hint})" if issue.hint else "")
        title = _escape_github_property(f"flowctl {issue.code}")
        out.write(f"::{level} file={file},line={issue.line},col={issue.col},title={title}::{_escape_github(message)}\n")
    render_text_summary(loaded, out)


def render_text_summary(loaded: Any, out: IO[str]) -> None:
    out.write(f"{len(loaded.errors)} errors, {len(loaded.warnings)} warnings\n")


def render_sarif(loaded: Any, out: IO[str]) -> None:
    """SARIF 2.1.0, the format GitHub code scanning and other tools ingest."""
    _dump(sarif_log([loaded]), out)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github, "sarif": render_sarif}


def nothing_found(directory: Path) -> str:
    return (
        f"no flowctl documents under {directory}: nothing to validate (a flowctl directory holds YAML files "
        "with 'apiVersion: flowctl/v1' and a kind, e.g. flowctl.yaml with kind: Config)"
    )


def _is_empty(loaded: Any) -> bool:
    return loaded.documents == 0 and not loaded.issues


def render_empty(loaded: Any, fmt: str, out: IO[str]) -> None:
    """A directory without a single document is an error in every format: a wrong path must not pass CI."""
    message = nothing_found(loaded.root)
    if fmt == "github":
        out.write(f"::error title=flowctl::{_escape_github(message)}\n")
    else:
        out.write(f"{loaded.root}: invalid: {message}\n")


def validate(directories: Sequence[Path], fmt: str, out: IO[str], env: Mapping[str, str] | None = None) -> bool:
    """``env``: also check that every ${ENV} variable the config needs is set in it (E095).

    ``json`` and ``sarif`` print one document however many directories are given (a reader
    parses the whole output); text and GitHub lines are printed directory by directory."""
    loaded = []
    for directory in directories:
        with Progress(f"validate {directory}: files read", enabled=fmt == "text") as progress:
            each = load_bundle(directory, tick=progress.advance if progress.shown else None)
        if env is not None and each.bundle is not None:
            each.issues.extend(env_issues(each.bundle, env))
        loaded.append(each)
    if fmt == "json":
        _dump(json_documents(loaded), out)
    elif fmt == "sarif":
        _dump(
            sarif_log([e for e in loaded if not _is_empty(e)], [nothing_found(e.root) for e in loaded if _is_empty(e)]),
            out,
        )
    else:
        for each in loaded:
            if _is_empty(each):
                render_empty(each, fmt, out)
            else:
                RENDERERS[fmt](each, out)
    return all(each.ok and not _is_empty(each) for each in loaded)


@click.command(
    "validate",
    epilog="""\b
Examples:
  flowctl validate                          # the current directory
  flowctl validate examples/helpdesk --format json
  flowctl validate . --format github        # annotations in a GitHub Actions job
  flowctl validate . --format sarif > flowctl.sarif
  flowctl validate config-a config-b --format json   # one document for both
  flowctl validate --env                    # where the daemon runs: every ${ENV} it needs is set

\b
Exit codes: 0 valid (warnings allowed), 1 invalid or no flowctl document found, 2 usage error.
Text lines read 'file:line:col: error[CODE]: message (hint: ...)'; codes are
stable (docs/errors.md), wording may change. json and sarif print ONE document
however many directories are given (json: the sums, every issue with its
"root", and each directory's own document under "directories"; sarif: one run).
Each SARIF rule links to its section of docs/errors.md (set FLOWCTL_DOCS_URL
to link to your own copy).""",
)
@click.argument("directories", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Output form: text for people, json for scripts, github annotations, sarif 2.1.0.",
)
@click.option(
    "--env",
    "check_env",
    is_flag=True,
    help="Also fail (E095) on every ${ENV} variable a channel, a source or an API token needs that is not "
    "set in this environment.",
)
def command(directories: tuple[Path, ...], fmt: str, check_env: bool) -> None:
    """Check every YAML document under DIRECTORIES (default: .) against the schemas and the
    semantic rules (references, graphs, expressions, schedules, limits, secrets)."""
    for directory in directories:
        if not directory.exists():
            raise click.BadParameter(f"no such file or directory: {directory}", param_hint="DIRECTORIES")
    ok = validate(directories or (Path(),), fmt, sys.stdout, dict(os.environ) if check_env else None)
    sys.exit(0 if ok else 1)
