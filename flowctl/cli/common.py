"""Helpers shared by commands: loading a directory and failing with a clear message."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


def load_or_exit(directory: Path, *, allow_warnings: bool = True) -> Any:
    """Load and validate ``directory``; print every error and exit 1 when it is invalid."""
    from flowctl.spec.config import load_bundle

    if not directory.exists():
        raise click.BadParameter(f"no such file or directory: {directory}", param_hint="DIR")
    loaded = load_bundle(directory)
    if not loaded.ok:
        for issue in loaded.errors:
            click.echo(str(issue), err=True)
        click.echo(f"{directory}: invalid: {len(loaded.errors)} errors; run 'flowctl validate {directory}'",
                   err=True)
        sys.exit(1)
    return loaded
