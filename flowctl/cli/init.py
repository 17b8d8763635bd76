"""``flowctl init [DIR]``: a new configuration repository in one command.

It copies ``init_template/`` (package data: a files' name starting with ``dot-`` is written with a
``.``, because wheels leave hidden files out), fills in the directory's name and flowctl's
version, and writes the JSON Schemas to ``.flowctl/schemas`` for the editor settings it creates.
What it writes validates and its scenarios pass as created (a test runs both). It never
overwrites: a directory with anything in it (``.git`` aside) is refused unless ``--force``, which
replaces only the files init writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from flowctl import __version__
from flowctl.cli.schema import all_schemas, dumps

TEMPLATE = Path(__file__).with_name("init_template")
SCHEMAS = Path(".flowctl") / "schemas"
#: What an empty repository may already hold.
_ALLOWED = frozenset({".git"})


def _target(relative: Path) -> Path:
    return Path(*(("." + part.removeprefix("dot-")) if part.startswith("dot-") else part for part in relative.parts))


def _name(directory: Path) -> str:
    """The Config's name: the folder's name, as a document name may be written."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.resolve().name).strip("-. ")
    return name[:100] or "crm"


def plan(directory: Path) -> dict[Path, str]:
    """Every file init writes, relative to ``directory``, with its text."""
    fill = {"__NAME__": _name(directory), "__VERSION__": __version__}
    files: dict[Path, str] = {}
    for source in sorted(TEMPLATE.rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            text = source.read_text(encoding="utf-8")
            for marker, value in fill.items():
                text = text.replace(marker, value)
            files[_target(source.relative_to(TEMPLATE))] = text
    for name, schema in all_schemas().items():
        files[SCHEMAS / name] = dumps(schema)
    return files


def occupied(directory: Path) -> list[str]:
    """What is already in ``directory`` (``.git`` aside); empty when init may write there."""
    if not directory.exists():
        return []
    return sorted(entry.name for entry in directory.iterdir() if entry.name not in _ALLOWED)


def init(directory: Path) -> list[Path]:
    """Write the new repository; return the files written, relative to ``directory``."""
    files = plan(directory)
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


@click.command(
    "init",
    epilog="""\b
Examples:
  flowctl init crm-automations     # a new folder
  cd crm && git init && flowctl init
  flowctl init . --force           # write the files again over an existing repository

\b
It writes flowctl.yaml, objects/, flows/, pipelines/, templates/, channels/
and tests/ with one working example (a welcome flow and its scenario test),
.flowctlignore, .gitignore, .vscode/settings.json (editor completion through
the schemas in .flowctl/schemas), .pre-commit-config.yaml and
.github/workflows/flowctl.yml (validate as SARIF for code scanning, then test).
Then: flowctl validate && flowctl test.
Exit codes: 0 written, 1 the directory is not empty (without --force).""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--force", is_flag=True, help="Write into a directory that is not empty, replacing the files init writes."
)
def command(directory: Path, force: bool) -> None:
    """Create a new flowctl configuration repository in DIR (default: .)."""
    present = occupied(directory)
    if present and not force:
        shown = ", ".join(present[:5]) + (", …" if len(present) > 5 else "")
        click.echo(
            f"flowctl init: {directory} is not empty ({shown}): nothing written "
            "(hint: pass an empty or new directory, or --force to write the example files over it)",
            err=True,
        )
        sys.exit(1)
    written = init(directory)
    shown_dir = directory if str(directory) != "." else Path.cwd()
    click.echo(f"created a flowctl repository in {shown_dir} ({len(written)} files)")
    cd = "" if str(directory) == "." else f"cd {directory} && "
    click.echo(f"next: {cd}flowctl validate && flowctl test")
