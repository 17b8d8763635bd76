"""``flowctl validate``: schema and semantic checks, in text, JSON, GitHub or SARIF form."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import click

from flowctl import __version__
from flowctl.channels.env import env_issues
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


def render_json(loaded: Any, out: IO[str]) -> None:
    """The stable JSON form: ``{"valid", "documents", "files", "errors", "warnings", "issues"}``."""
    doc = {
        "version": 1,
        "root": str(loaded.root),
        "valid": loaded.ok,
        "documents": loaded.documents,
        "files": len(loaded.files),
        "errors": len(loaded.errors),
        "warnings": len(loaded.warnings),
        "issues": [issue.to_json() for issue in loaded.issues],
    }
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
    codes = sorted({issue.code for issue in loaded.issues})
    rules = [{"id": code, "helpUri": "https://flowctl.dev/docs/errors#" + code.lower()} for code in codes]
    results = []
    for issue in loaded.issues:
        message = issue.message + (f" (hint: {issue.hint})" if issue.hint else "")
        results.append(
            {
                "ruleId": issue.code,
                "ruleIndex": codes.index(issue.code),
                "level": "error" if issue.severity == "error" else "warning",
                "message": {"text": message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": (Path(loaded.root) / issue.file).as_posix()},
                            "region": {"startLine": issue.line, "startColumn": issue.col},
                        }
                    }
                ],
            }
        )
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "flowctl",
                        "version": __version__,
                        "informationUri": "https://flowctl.dev",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    json.dump(sarif, out, ensure_ascii=False, indent=2)
    out.write("\n")


RENDERERS = {"text": render_text, "json": render_json, "github": render_github, "sarif": render_sarif}


def nothing_found(directory: Path) -> str:
    return (
        f"no flowctl documents under {directory}: nothing to validate (a flowctl directory holds YAML files "
        "with 'apiVersion: flowctl/v1' and a kind, e.g. flowctl.yaml with kind: Config)"
    )


def render_empty(loaded: Any, fmt: str, out: IO[str]) -> None:
    """A directory without a single document is an error in every format: a wrong path must not pass CI."""
    message = nothing_found(loaded.root)
    if fmt == "json":
        json.dump(
            {
                "version": 1,
                "root": str(loaded.root),
                "valid": False,
                "documents": 0,
                "files": 0,
                "errors": 1,
                "warnings": 0,
                "issues": [],
                "error": message,
            },
            out,
            ensure_ascii=False,
            indent=2,
        )
        out.write("\n")
    elif fmt == "github":
        out.write(f"::error title=flowctl::{_escape_github(message)}\n")
    elif fmt == "sarif":
        json.dump(
            {
                "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
                "version": "2.1.0",
                "runs": [
                    {
                        "tool": {
                            "driver": {
                                "name": "flowctl",
                                "version": __version__,
                                "informationUri": "https://flowctl.dev",
                            }
                        },
                        "invocations": [
                            {
                                "executionSuccessful": False,
                                "toolExecutionNotifications": [{"level": "error", "message": {"text": message}}],
                            }
                        ],
                        "results": [],
                    }
                ],
            },
            out,
            ensure_ascii=False,
            indent=2,
        )
        out.write("\n")
    else:
        out.write(f"{loaded.root}: invalid: {message}\n")


def validate(directories: Sequence[Path], fmt: str, out: IO[str], env: Mapping[str, str] | None = None) -> bool:
    """``env``: also check that every ${ENV} variable the config needs is set in it (E095)."""
    ok = True
    for directory in directories:
        with Progress(f"validate {directory}: files read", enabled=fmt == "text") as progress:
            loaded = load_bundle(directory, tick=progress.advance if progress.shown else None)
        if loaded.documents == 0 and not loaded.issues:
            render_empty(loaded, fmt, out)
            ok = False
            continue
        if env is not None and loaded.bundle is not None:
            loaded.issues.extend(env_issues(loaded.bundle, env))
        RENDERERS[fmt](loaded, out)
        ok = ok and loaded.ok
    return ok


@click.command(
    "validate",
    epilog="""\b
Examples:
  flowctl validate                          # the current directory
  flowctl validate examples/helpdesk --format json
  flowctl validate . --format github        # annotations in a GitHub Actions job
  flowctl validate . --format sarif > flowctl.sarif
  flowctl validate --env                    # where the daemon runs: every ${ENV} it needs is set

\b
Exit codes: 0 valid (warnings allowed), 1 invalid or no flowctl document found, 2 usage error.
Text lines read 'file:line:col: error[CODE]: message (hint: ...)'; codes are
stable (docs/errors.md), wording may change.""",
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
